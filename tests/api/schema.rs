//! The database refuses bad data itself, whatever the application sends:
//! every rule of the schema attacked with plain SQL, past the service.

use sqlx::PgPool;

/// The constraint `sql` violates, or none if it succeeds.
async fn refused_by(db: &PgPool, sql: &str) -> Option<String> {
    match sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(db).await {
        Ok(_) => None,
        Err(err) => Some(
            err.as_database_error()
                .and_then(|e| e.constraint().map(str::to_owned))
                .unwrap_or_else(|| panic!("{sql}: {err}")),
        ),
    }
}

#[sqlx::test]
async fn every_column_rule_refuses_a_bad_value_written_past_the_service(db: PgPool) {
    sqlx::query(
        "insert into product (manager_id, id, name, name_key, price, quantity) values ('m', 1, 'Mug', 'mug', 5, 3)",
    )
    .execute(&db)
    .await
    .unwrap();
    let product = |column: &str, value: &str| format!("update product set {column} = {value} where id = 1");
    let cases = [
        (product("quantity", "-1"), "stock_quantity_range"),
        (product("quantity", "quantity - 4"), "stock_quantity_range"),
        (product("quantity", "1000000001"), "stock_quantity_range"),
        (product("price", "0"), "product_price_range"),
        (product("price", "1000000.01"), "product_price_range"),
        (product("name", "' Mug'"), "product_name_format"),
        (product("name", "''"), "product_name_format"),
        (product("name", "repeat('x', 201)"), "product_name_format"),
        (product("name_key", "''"), "product_name_key_length"),
        (product("version", "0"), "row_version_positive"),
        (product("low_stock_threshold", "-1"), "stock_threshold_range"),
        (product("manager_id", "'a b'"), "manager_key_format"),
        (
            "insert into customer_order (manager_id, customer_id, customer_email, total_amount) \
             values ('m', 'c 1', 'a@b.c', 1)"
                .to_owned(),
            "customer_key_format",
        ),
        (
            "insert into customer_order (manager_id, customer_id, customer_email, total_amount) \
             values ('m', 'c1', 'ab', 1)"
                .to_owned(),
            "customer_email_length",
        ),
        (
            "insert into customer_order (manager_id, customer_id, customer_email, total_amount) \
             values ('m', 'c1', 'a@b.c', 0)"
                .to_owned(),
            "order_total_positive",
        ),
        (
            "insert into event (manager_id, type, data) values ('m', 'stock.stolen', '{}')".to_owned(),
            "event_type_known",
        ),
    ];
    for (sql, rule) in cases {
        assert_eq!(refused_by(&db, &sql).await.as_deref(), Some(rule), "{sql}");
    }
    // The lines of an order, against an order that passes every rule.
    sqlx::query(
        "insert into customer_order (manager_id, id, customer_id, customer_email, total_amount) \
         values ('m', 1, 'c1', 'a@b.c', 5)",
    )
    .execute(&db)
    .await
    .unwrap();
    let line = |line_no: i32, quantity: i32, price: &str| {
        format!(
            "insert into order_line (manager_id, order_id, line_no, product_id, quantity, unit_price, name) \
             values ('m', 1, {line_no}, 1, {quantity}, {price}, 'Mug')"
        )
    };
    for (sql, rule) in [
        (line(0, 1, "5"), "line_number_positive"),
        (line(1, 0, "5"), "line_quantity_range"),
        (line(1, 1000001, "5"), "line_quantity_range"),
        (line(1, 1, "0"), "line_price_positive"),
    ] {
        assert_eq!(refused_by(&db, &sql).await.as_deref(), Some(rule), "{sql}");
    }
    assert_eq!(refused_by(&db, &line(1, 1, "5")).await, None);

    // Nothing refused changed anything; amounts keep their scale.
    let row: (i32, String, String, i64) =
        sqlx::query_as("select quantity, price::text, name, version from product where id = 1")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(row, (3, "5.00".to_owned(), "Mug".to_owned(), 1));
    assert_eq!(refused_by(&db, &product("price", "2.345")).await, None);
    let price: String = sqlx::query_scalar("select price::text from product where id = 1")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(price, "2.35", "numeric(9,2) rounds as before");
}
