//! Framing of `/interlink/index/1` on a libp2p stream: one length-prefixed message each
//! way, the length checked against the protocol's limit before anything is allocated.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use interlink_protocol::discovery::wire::{
    MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, PROTOCOL_NAME, Request, Response, WireError,
};
use libp2p::StreamProtocol;

/// The protocol name on the wire.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(PROTOCOL_NAME);

/// The request-response codec of the index protocol.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    io.read_exact(&mut length).await?;
    let length = usize::try_from(u32::from_be_bytes(length)).unwrap_or(usize::MAX);
    if length > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a message of {length} bytes is over the limit of {limit}"),
        ));
    }
    let mut bytes = vec![0u8; length];
    io.read_exact(&mut bytes).await?;
    Ok(bytes)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let length = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
    io.write_all(&length.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_REQUEST_BYTES).await?;
        Request::decode(&bytes).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_RESPONSE_BYTES).await?;
        Response::decode(&bytes).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = request.encode().map_err(invalid)?;
        write_frame(io, &bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = response.encode().map_err(invalid)?;
        write_frame(io, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink_protocol::discovery::wire::{Found, RequestRefusal};
    use libp2p::request_response::Codec as _;

    #[tokio::test]
    async fn messages_cross_a_stream_and_oversized_lengths_are_refused() {
        let mut codec = Codec;
        let mut wire = futures::io::Cursor::new(Vec::new());
        codec
            .write_response(&PROTOCOL, &mut wire, Response::Found(Found::default()))
            .await
            .unwrap();
        let mut read = futures::io::Cursor::new(wire.into_inner());
        let response = codec.read_response(&PROTOCOL, &mut read).await;
        assert_eq!(response.ok(), Some(Response::Found(Found::default())));

        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let mut read = futures::io::Cursor::new(huge);
        let refused = codec.read_request(&PROTOCOL, &mut read).await;
        assert_eq!(
            refused.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::InvalidData)
        );

        let mut wire = futures::io::Cursor::new(Vec::new());
        codec
            .write_response(
                &PROTOCOL,
                &mut wire,
                Response::Refused(RequestRefusal::RateLimited),
            )
            .await
            .unwrap();
        let mut garbled = wire.into_inner();
        garbled[4] = 0xff;
        let mut read = futures::io::Cursor::new(garbled);
        assert!(codec.read_response(&PROTOCOL, &mut read).await.is_err());
    }
}
