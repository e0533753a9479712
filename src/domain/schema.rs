//! Small builders for the OpenAPI schemas the request types give of
//! themselves (`impl ToSchema` beside each parser): each schema states the
//! constants its parser reads.

use std::ops::RangeInclusive;

use serde_json::Value;
use utoipa::openapi::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Ref, SchemaFormat, Type,
    path::{Parameter, ParameterBuilder, ParameterIn},
};

/// An object with this description; its properties are added by the caller.
pub(crate) fn object(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
}

/// A string with this description and example.
pub(crate) fn string(description: &str, example: &str) -> ObjectBuilder {
    example_of(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description)),
        example,
    )
}

/// A 64-bit integer in `range`, with this description and example.
pub(crate) fn integer(range: &RangeInclusive<i64>, description: &str, example: i64) -> ObjectBuilder {
    example_of(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some(description))
            .minimum(Some(*range.start()))
            .maximum(Some(*range.end())),
        example,
    )
}

/// An array of the named component with a length in `len`.
pub(crate) fn array_of(component: &str, len: &RangeInclusive<usize>, description: &str) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(Ref::from_schema_name(component))
        .description(Some(description))
        .min_items(Some(*len.start()))
        .max_items(Some(*len.end()))
}

/// The same schema with an example (the OpenAPI 3.0 `example` keyword,
/// which the document has always used).
#[allow(deprecated)]
pub(crate) fn example_of(builder: ObjectBuilder, example: impl Into<Value>) -> ObjectBuilder {
    builder.example(Some(example.into()))
}

/// A parameter in `place` with this schema, description and example.
pub(crate) fn parameter(
    place: ParameterIn,
    name: &str,
    required: bool,
    description: &str,
    schema: ObjectBuilder,
    example: Option<Value>,
) -> Parameter {
    let required = if required {
        utoipa::openapi::Required::True
    } else {
        utoipa::openapi::Required::False
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .description(Some(description))
        .required(required)
        .schema(Some(schema))
        .example(example)
        .build()
}
