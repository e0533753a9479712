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

use futures_util::{FutureExt, StreamExt, TryStreamExt, future::BoxFuture, stream::BoxStream};
use sqlx::{Database, Describe, Either, Execute, Executor, PgPool, Postgres, SqlStr, Transaction, error::BoxDynError};

/// The database: the pool, and whether a transaction-mode pooler is in
/// front of the server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: PgPool,
    /// With a pooler: the statement that opens every transaction.
    pooled: Option<SqlStr>,
}

/// Statements straight to the server, prepared once per connection.
impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        Self { pool, pooled: None }
    }
}

impl Db {
    /// Statements through a transaction-mode pooler: unnamed, each in an
    /// explicit transaction opened by `begin` (which may set the
    /// transaction's timeouts with `SET LOCAL`).
    pub fn through_pooler(pool: PgPool, begin: String) -> Self {
        Self {
            pool,
            pooled: Some(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(begin))),
        }
    }

    /// The pool itself, for what is not a statement (`COPY`, pool sizes).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether a transaction-mode pooler is in front of the server.
    pub fn is_pooled(&self) -> bool {
        self.pooled.is_some()
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let inner = match &self.pooled {
            Some(begin) => self.pool.begin_with(begin.clone()).await?,
            None => self.pool.begin().await?,
        };
        Ok(Tx {
            inner,
            unnamed: self.is_pooled(),
        })
    }
}

/// A transaction; statements run in it through `&mut Tx`. Dropped without
/// [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub struct Tx {
    inner: Transaction<'static, Postgres>,
    unnamed: bool,
}

impl Tx {
    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await
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
        if !self.is_pooled() {
            return self.pool.fetch_many(query);
        }
        // The whole result is read inside the transaction, then streamed.
        async move {
            let mut tx = self.begin().await?;
            let steps: Vec<Step> = (&mut tx).fetch_many(query).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(futures_util::stream::iter(steps.into_iter().map(Ok)))
        }
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
        if !self.is_pooled() {
            return self.pool.fetch_optional(query);
        }
        async move {
            let mut tx = self.begin().await?;
            let row = (&mut tx).fetch_optional(query).await?;
            tx.commit().await?;
            Ok(row)
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
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
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
        (&mut *self.inner).fetch_many(query)
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
        (&mut *self.inner).fetch_optional(query)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [<Postgres as Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<Postgres as Database>::Statement, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.inner).prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        (&mut *self.inner).describe(sql)
    }
}
