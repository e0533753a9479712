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

/// What to lose, on the connection that carries a text.
#[derive(Debug, Clone)]
pub enum Lose {
    /// Close the connection instead of passing on the message carrying this text.
    Request(Vec<u8>),
    /// Pass the message on, then close the connection instead of passing on the server's reply.
    Reply(Vec<u8>),
    /// On the connection that carries the first text, pass on the next
    /// message carrying the second (a `COMMIT`, say), then close it instead
    /// of passing on the server's reply.
    ReplyToNext(Vec<u8>, Vec<u8>),
}

/// A running proxy.
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    trap: Arc<Mutex<Option<Lose>>>,
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
    pub fn arm(&self, trap: Lose) {
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

async fn pass(mut client: TcpStream, mut server: TcpStream, trap: Arc<Mutex<Option<Lose>>>, sprung: Arc<AtomicUsize>) {
    let (mut up, mut down) = (vec![0u8; 65536], vec![0u8; 65536]);
    let mut drop_reply = false;
    let mut then: Option<Vec<u8>> = None;
    loop {
        tokio::select! {
            read = client.read(&mut up) => {
                let Ok(n) = read else { return };
                if n == 0 {
                    return;
                }
                let chunk = &up[..n];
                if then.as_ref().is_some_and(|text| contains(chunk, text)) {
                    then = None;
                    drop_reply = true;
                }
                let sprang = {
                    let mut armed = trap.lock().unwrap();
                    let hit = match armed.as_ref() {
                        Some(Lose::Request(text) | Lose::Reply(text) | Lose::ReplyToNext(text, _)) => {
                            contains(chunk, text)
                        }
                        None => false,
                    };
                    if hit { armed.take() } else { None }
                };
                match sprang {
                    Some(Lose::Request(_)) => {
                        sprung.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Some(Lose::Reply(_)) => drop_reply = true,
                    Some(Lose::ReplyToNext(_, next)) => then = Some(next),
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
