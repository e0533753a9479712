//! Prints the OpenAPI document the service serves at `/openapi.json`, as
//! pretty JSON, without starting anything: `cargo run --example openapi`.

fn main() {
    let document = ecommerce_api::http::openapi();
    match serde_json::to_string_pretty(&document) {
        Ok(text) => println!("{text}"),
        Err(err) => {
            eprintln!("could not serialise the document: {err}");
            std::process::exit(1);
        }
    }
}
