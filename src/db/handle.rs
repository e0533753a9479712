//! [`Db`]: how every statement reaches PostgreSQL, straight from the pool or
//! through a connection pooler in transaction mode (PgBouncer as Debian
//! ships it, 1.18, which keeps no prepared statement from one transaction
//! to the next).
//!
//! Straight: each connection prepares a statement once and keeps it (named
//! prepared statements), and a lone statement runs in its own implicit
//! transaction, one round trip.
//!
//! Through a pooler, two transactions of one client may run on different
//! server connections, and the driver prepares a statement in one round
//! trip (Parse, Describe, Sync) and runs it in the next. So there every
//! statement is unnamed and runs inside an explicit transaction, which holds
//! one server connection from `BEGIN` to `COMMIT`; the `BEGIN` also sets the
//! statement and lock timeouts, which a pooler does not pass on from a
//! connection's start-up options. A lone statement then costs four round
//! trips instead of one: the price of the pooler, which the benchmark shows.
//!
//! The driver (sqlx 0.9) has no setting for this: a statement cache of size
//! 0 still names every statement, on a server connection other clients may
//! get next. So the executor [`&mut Tx`](Tx) marks each statement unnamed on
//! its way to the driver when a pooler is in use, and otherwise hands it over
//! unchanged; [`&Db`](Db) runs a lone statement straight on the pool, or,
//! through a pooler, in a `Tx` of its own.

use std::{
    future::Future,
    ops::{Deref, DerefMut},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleResult};
use futures_util::{FutureExt, StreamExt, TryStreamExt, future::BoxFuture, stream::BoxStream};
use sqlx::{
    Connection, Database, Describe, Either, Execute, Executor, PgConnection, PgPool, Postgres, SqlStr,
    error::BoxDynError, postgres::PgConnectOptions,
};

/// How long a connection may sit idle in the pool before it is pinged on
/// its way out: a database that restarted meanwhile then costs no request
/// an error.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The longest wait for a connection (answered 503 after it).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

tokio::task_local! {
    /// Set while work runs under [`abandonable`]: whether it has been given up.
    static ABANDONED: Arc<AtomicBool>;
}

/// Runs `work` so that, once `abandoned` is set and `work` is dropped
/// unfinished, the connections it holds are closed instead of being brought
/// back to the pool: a statement still queued on one can then no longer
/// complete on it (the server abandons it when it finds its client gone), and
/// nothing of it is waited for.
pub fn abandonable<F: Future>(abandoned: Arc<AtomicBool>, work: F) -> impl Future<Output = F::Output> {
    ABANDONED.scope(abandoned, work)
}

/// The database: the pool, and whether a transaction-mode pooler is in
/// front of the server. Cheap to clone.
///
/// The pool is deadpool's, holding sqlx connections, rather than sqlx's own:
/// sqlx's pool sends a round trip (`Sync`) on every connection it gets
/// back, which under load was an eighth of the service's CPU and as many
/// wake-ups of the server as statements. Here a connection that finished its
/// statement goes back as it is, and only one left mid-statement (an error,
/// a cancelled request) or mid-transaction is brought back to a known state
/// first, in the background: a rollback and a round trip, or it is closed.
#[derive(Clone)]
pub struct Db {
    pool: managed::Pool<Connector>,
    /// With a pooler: the statement that opens every transaction.
    pooled: Option<SqlStr>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("pool", &self.pool.status())
            .field("pooled", &self.pooled.is_some())
            .finish()
    }
}

/// Opens the pool's connections.
#[derive(Debug)]
struct Connector {
    options: PgConnectOptions,
}

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    async fn recycle(&self, conn: &mut PgConnection, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        if metrics.last_used() >= PING_AFTER_IDLE {
            conn.ping().await?;
        }
        Ok(())
    }
}

/// Statements straight to the server, prepared once per connection, on a
/// pool with the connection options and size of `pool` (tests build their
/// database handles from the pool they use themselves).
impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        let size = pool.options().get_max_connections() as usize;
        Self::new((*pool.connect_options()).clone(), size, None)
    }
}

impl Db {
    /// A pool of at most `size` connections made with `options`; with a
    /// pooler, `begin` opens every transaction. Connects lazily.
    pub fn new(options: PgConnectOptions, size: usize, begin: Option<String>) -> Self {
        // No timeouts of the pool's own: `acquire` bounds the whole wait.
        let pool = managed::Pool::builder(Connector { options })
            .max_size(size.max(1))
            // The connection used last goes out first: under light load the
            // same few stay warm (and are not pinged), the others age.
            .queue_mode(managed::QueueMode::Lifo)
            .build()
            .expect("a pool without timeouts needs no runtime and builds");
        Self {
            pool,
            pooled: begin.map(|begin| sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(begin))),
        }
    }

    /// Whether a transaction-mode pooler is in front of the server.
    pub fn is_pooled(&self) -> bool {
        self.pooled.is_some()
    }

    /// A connection of the pool, for what is not a lone statement (`COPY`,
    /// migrations). Mark it [`Conn::settled`] once done with it cleanly.
    ///
    /// The whole wait (for a free slot, a new connection, the ping of an
    /// idle one) is bounded by [`ACQUIRE_TIMEOUT`].
    pub async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        let got = tokio::time::timeout(ACQUIRE_TIMEOUT, self.pool.get())
            .await
            .unwrap_or(Err(PoolError::Timeout(managed::TimeoutType::Wait)));
        match got {
            Ok(conn) => Ok(Conn {
                conn: Some(conn),
                settled: false,
                in_transaction: false,
                abandoned: ABANDONED.try_with(Arc::clone).ok(),
            }),
            Err(PoolError::Backend(err)) => Err(err),
            Err(PoolError::Timeout(_)) => Err(sqlx::Error::PoolTimedOut),
            Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            Err(err) => Err(sqlx::Error::Protocol(err.to_string())),
        }
    }

    /// Connections open, and those of them idle in the pool.
    pub fn connections(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.available)
    }

    /// Closes the pool: idle connections say goodbye to the server, those
    /// in use are closed when they come back.
    pub async fn close(&self) {
        // Take the idle ones out first: closing the pool drops them unsaid.
        let idle = self.pool.retain(|_, _| false).removed;
        self.pool.close();
        for conn in idle {
            let _ = conn.close().await;
        }
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let mut conn = self.acquire().await?;
        conn.in_transaction = true;
        let begin = self.pooled.as_ref().map_or("begin", SqlStr::as_str);
        sqlx::raw_sql(sqlx::AssertSqlSafe(begin)).execute(&mut *conn).await?;
        Ok(Tx {
            conn,
            unnamed: self.is_pooled(),
        })
    }

    /// Runs a lone statement on a connection of its own; the whole result
    /// is read before the connection goes back.
    async fn lone<'q, E: 'q + Execute<'q, Postgres>>(&self, query: E) -> Result<Vec<Step>, sqlx::Error> {
        match &self.pooled {
            None => {
                let mut conn = self.acquire().await?;
                let steps = (&mut *conn).fetch_many(query).try_collect().await?;
                conn.settled();
                Ok(steps)
            }
            Some(_) => {
                let mut tx = self.begin().await?;
                let steps = (&mut tx).fetch_many(query).try_collect().await?;
                tx.commit().await?;
                Ok(steps)
            }
        }
    }
}

/// A connection out of the pool. Unless [`Conn::settled`], it is brought
/// back to a known state before the pool gets it again, in the background:
/// its transaction is rolled back, what it still had to send or receive is
/// exchanged (with a round trip that also asks whether the server is still
/// a primary), or, if that fails, it is closed. One held by abandoned work
/// (see [`abandonable`]), or by a server that is now a standby, is closed.
pub struct Conn {
    conn: Option<Object<Connector>>,
    settled: bool,
    in_transaction: bool,
    abandoned: Option<Arc<AtomicBool>>,
}

impl Conn {
    /// Marks the connection as at rest (its last statement finished): it
    /// goes back to the pool as it is.
    pub fn settled(mut self) {
        self.settled = true;
    }

    /// Closes the connection instead of bringing it back to the pool: what
    /// is still queued on it can then no longer complete on it.
    pub fn close(mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("a connection until dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a connection until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take().filter(|_| !self.settled) else {
            return;
        };
        if self.abandoned.as_ref().is_some_and(|a| a.load(Ordering::Acquire)) {
            drop(Object::take(conn));
            return;
        }
        let rollback = self.in_transaction;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let settled = async {
                        if rollback {
                            sqlx::raw_sql("rollback").execute(&mut *conn).await?;
                        }
                        // A server that became a standby (a failover) would
                        // refuse every write the connection is given next.
                        sqlx::query_scalar::<_, bool>("select pg_is_in_recovery()")
                            .fetch_one(&mut *conn)
                            .await
                    };
                    if !matches!(settled.await, Ok(false)) {
                        drop(Object::take(conn));
                    }
                });
            }
            Err(_) => drop(Object::take(conn)),
        }
    }
}

/// A transaction; statements run in it through `&mut Tx`. Dropped without
/// [`Tx::commit`], it rolls back (in the background, before its connection
/// serves anything else).
pub struct Tx {
    conn: Conn,
    unnamed: bool,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("unnamed", &self.unnamed).finish()
    }
}

impl Tx {
    /// Commits the transaction.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("commit").execute(&mut *self.conn).await?;
        self.conn.in_transaction = false;
        self.conn.settled = true;
        Ok(())
    }

    /// Sends `data` to a `COPY ... FROM STDIN` statement in this
    /// transaction; returns the rows copied.
    pub async fn copy_in(&mut self, statement: &str, data: Vec<u8>) -> Result<u64, sqlx::Error> {
        let mut copy = self.conn.copy_in_raw(statement).await?;
        copy.send(data).await?;
        copy.finish().await
    }

    /// `statement` as this transaction runs it: unnamed through a pooler.
    fn mark<'q, E: Execute<'q, Postgres>>(&self, statement: E) -> Marked<E> {
        Marked {
            statement,
            persistent: !self.unnamed,
        }
    }
}

/// A statement on its way to the driver, unnamed when `persistent` is false.
struct Marked<E> {
    statement: E,
    persistent: bool,
}

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Marked<E> {
    fn sql(self) -> SqlStr {
        self.statement.sql()
    }

    fn statement(&self) -> Option<&<Postgres as Database>::Statement> {
        self.statement.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<<Postgres as Database>::Arguments>, BoxDynError> {
        self.statement.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.persistent && self.statement.persistent()
    }
}

type Step = Either<<Postgres as Database>::QueryResult, <Postgres as Database>::Row>;

impl<'c> Executor<'c> for &'c Db {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        async move { Ok::<_, sqlx::Error>(futures_util::stream::iter(self.lone(query).await?.into_iter().map(Ok))) }
            .into_stream()
            .try_flatten()
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<<Postgres as Database>::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        async move {
            Ok(self.lone(query).await?.into_iter().find_map(|step| match step {
                Either::Right(row) => Some(row),
                Either::Left(_) => None,
            }))
        }
        .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [<Postgres as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Postgres as Database>::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        async move {
            let mut conn = self.acquire().await?;
            let statement = (&mut *conn).prepare_with(sql, parameters).await?;
            conn.settled();
            Ok(statement)
        }
        .boxed()
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        async move {
            let mut conn = self.acquire().await?;
            let described = (&mut *conn).describe(sql).await?;
            conn.settled();
            Ok(described)
        }
        .boxed()
    }
}

impl<'c> Executor<'c> for &'c mut Tx {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Step, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let query = self.mark(query);
        (&mut *self.conn).fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<<Postgres as Database>::Row>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let query = self.mark(query);
        (&mut *self.conn).fetch_optional(query)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [<Postgres as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Postgres as Database>::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.conn).prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.conn).describe(sql)
    }
}
