//! Reading a node's `/metrics` from outside, as Prometheus does.

use super::http::Api;

/// `GET /metrics` at `url` (`http://ADDR/metrics`): the status, content type and body.
pub async fn scrape(url: &str) -> (u16, String, String) {
    let api = Api::new(url);
    let response = tokio::task::spawn_blocking(move || api.get("/metrics"))
        .await
        .expect("the scrape");
    let content_type = response
        .header("content-type")
        .unwrap_or_default()
        .to_owned();
    let body = String::from_utf8(response.body).expect("UTF-8 metrics");
    (response.status, content_type, body)
}

/// The value of the sample named exactly `series` (name and labels, as printed), if any.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The value of `series`, or 0 if the node has not recorded it yet.
pub fn count(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or(0.0)
}

/// The sum of every sample of `family` whose labels include `label` (`name="value"`).
pub fn sum_with(text: &str, family: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') && rest.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
