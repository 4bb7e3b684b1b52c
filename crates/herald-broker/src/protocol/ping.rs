//! PINGREQ → PINGRESP. Receiving any packet already reset the keep-alive
//! timer in the packet loop; nothing else to do.

use super::Client;
use super::disconnect::Close;
use herald_codec::Packet;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Client<S> {
    pub(crate) fn handle_pingreq(&mut self) -> Result<(), Close> {
        self.send(&Packet::PingResp);
        Ok(())
    }
}
