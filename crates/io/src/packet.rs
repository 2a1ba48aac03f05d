//! AF_PACKET links (in progress).
use crate::IoError;
use softnet_core::link::LinkQueue;

#[derive(Debug, Clone, Default)]
pub struct PacketOptions {}
pub struct PacketQueue {}
pub fn open_packet(dev: &str, _queues: usize, _opts: &PacketOptions) -> Result<Vec<Box<dyn LinkQueue>>, IoError> {
    Err(IoError::invalid(dev, "AF_PACKET not built yet"))
}
