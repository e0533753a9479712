//! The brief's walk-through, end to end.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::spawn_app;

#[sqlx::test]
async fn the_briefs_examples_work_as_written(db: PgPool) {
    let app = spawn_app(db).await;
    let response = app
        .post(
            "/api/inventory/products",
            json!({"manager_id": "mgr_123", "products": [
                {"name": "Premium Coffee Beans", "price": 15.99, "quantity": 100},
                {"name": "Ceramic Coffee Mug", "price": 12.99, "quantity": 50}]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"products":[{"id":"prod_001","name":"Premium Coffee Beans","price":15.99,"quantity":100},{"id":"prod_002","name":"Ceramic Coffee Mug","price":12.99,"quantity":50}]}"#
    );

    let response = app
        .get("/api/inventory/products?status=in_stock&manager_id=mgr_123")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["products"].as_array().unwrap().len(), 2);

    let response = app
        .post(
            "/api/orders/process",
            json!({"manager_id": "mgr_123", "customer": {"id": "cust_456", "email": "customer@example.com"},
                   "products": [{"product_id": "prod_001", "quantity": 2}, {"product_id": "prod_002", "quantity": 1}]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"order_id":"ord_001","status":"processed","total_amount":44.97}"#
    );

    let response = app
        .post(
            "/api/inventory/discontinue",
            json!({"manager_id": "mgr_123", "product_id": "prod_001"}),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert!(response.text().await.unwrap().is_empty());
    assert_eq!(app.stock("prod_001").await, 98);
    app.stop().await;
}
