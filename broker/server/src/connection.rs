//! The task of one active connection. All it holds is the glommio stream; everything else is
//! in the shard's tables, so a task is small and a parked connection has none.

use std::rc::Rc;

use glommio::net::TcpStream;
use ironsight_core::conn::ConnId;

use crate::shard_io::ShardIo;

pub async fn serve(io: Rc<ShardIo>, conn: ConnId, generation: u32, mut stream: TcpStream) {
    futures_lite::future::poll_fn(|cx| io.poll_connection(conn, generation, &mut stream, cx)).await;
}
