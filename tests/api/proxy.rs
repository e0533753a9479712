//! A TCP proxy between the service and PostgreSQL that the test controls:
//! it passes bytes both ways until told to break the connection that carries
//! a given text, either before the server sees it (the request is lost) or
//! right after the server's reply to it (the reply is lost: for a statement
//! that commits on its own, the reply to its `COMMIT`). It can also refuse
//! every new connection, as a database that is gone would.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Which connection to break, and when.
#[derive(Debug, Clone)]
pub enum Trap {
    /// Close the connection instead of passing on the message carrying this text.
    DropRequest(Vec<u8>),
    /// Pass the message on, then close the connection instead of passing on the server's reply.
    DropReply(Vec<u8>),
}

/// A running proxy.
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    trap: Arc<Mutex<Option<Trap>>>,
    refusing: Arc<AtomicBool>,
    sprung: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let trap = Arc::new(Mutex::new(None));
        let refusing = Arc::new(AtomicBool::new(false));
        let sprung = Arc::new(AtomicUsize::new(0));
        let (t, r, s) = (trap.clone(), refusing.clone(), sprung.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if r.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(pass(client, server, t.clone(), s.clone()));
            }
        });
        Self {
            port,
            trap,
            refusing,
            sprung,
        }
    }

    /// Arms the trap for the next connection that carries its text.
    pub fn arm(&self, trap: Trap) {
        *self.trap.lock().unwrap() = Some(trap);
    }

    /// How many times a trap was sprung.
    pub fn sprung(&self) -> usize {
        self.sprung.load(Ordering::SeqCst)
    }

    /// Refuses (or, with `false`, accepts again) every new connection.
    pub fn refuse(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }
}

async fn pass(mut client: TcpStream, mut server: TcpStream, trap: Arc<Mutex<Option<Trap>>>, sprung: Arc<AtomicUsize>) {
    let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
    let mut drop_reply = false;
    loop {
        tokio::select! {
            read = client.read(&mut up) => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                let chunk = &up[..n];
                let sprang = {
                    let mut armed = trap.lock().unwrap();
                    let hit = match armed.as_ref() {
                        Some(Trap::DropRequest(text) | Trap::DropReply(text)) => contains(chunk, text),
                        None => false,
                    };
                    if hit { armed.take() } else { None }
                };
                match sprang {
                    Some(Trap::DropRequest(_)) => {
                        sprung.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Some(Trap::DropReply(_)) => drop_reply = true,
                    None => {}
                }
                if server.write_all(chunk).await.is_err() {
                    return;
                }
            }
            read = server.read(&mut down) => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                if drop_reply {
                    sprung.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                if client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
