//! The connector classes this worker knows, by the short names configs use in
//! `connector.class` (Kafka's class names are aliased to them in [`crate::config`]).

use std::sync::Arc;

use crate::connector::{Connector, ConnectorType, Plugin};
use crate::converter::Converter;
use crate::{file, http, mirror, parquet, postgres};

/// Every built-in connector.
pub fn all() -> Vec<Plugin> {
    vec![
        Plugin {
            class: "file-source",
            connector_type: ConnectorType::Source,
            definition: file::source::definition(),
            key_converter: Converter::String,
            value_converter: Converter::String,
            make: || Connector::Source(Arc::new(file::FileSource)),
        },
        Plugin {
            class: "file-sink",
            connector_type: ConnectorType::Sink,
            definition: file::sink::definition(),
            key_converter: Converter::String,
            value_converter: Converter::String,
            make: || Connector::Sink(Arc::new(file::FileSink)),
        },
        Plugin {
            class: "postgres-sink",
            connector_type: ConnectorType::Sink,
            definition: postgres::sink::definition(),
            key_converter: Converter::Json { schemas: false },
            value_converter: Converter::Json { schemas: false },
            make: || Connector::Sink(Arc::new(postgres::PostgresSink)),
        },
        Plugin {
            class: "postgres-source",
            connector_type: ConnectorType::Source,
            definition: postgres::source::definition(),
            key_converter: Converter::Json { schemas: false },
            value_converter: Converter::Json { schemas: false },
            make: || Connector::Source(Arc::new(postgres::PostgresSource)),
        },
        Plugin {
            class: "http-source",
            connector_type: ConnectorType::Source,
            definition: http::source::definition(),
            key_converter: Converter::Json { schemas: false },
            value_converter: Converter::Json { schemas: false },
            make: || Connector::Source(Arc::new(http::HttpSource)),
        },
        Plugin {
            class: "http-sink",
            connector_type: ConnectorType::Sink,
            definition: http::sink::definition(),
            key_converter: Converter::Json { schemas: false },
            value_converter: Converter::Json { schemas: false },
            make: || Connector::Sink(Arc::new(http::HttpSink)),
        },
        Plugin {
            class: "parquet-sink",
            connector_type: ConnectorType::Sink,
            definition: parquet::sink::definition(),
            key_converter: Converter::Bytes,
            value_converter: Converter::Json { schemas: false },
            make: || Connector::Sink(Arc::new(parquet::ParquetSink)),
        },
        Plugin {
            class: "mirror-source",
            connector_type: ConnectorType::Source,
            definition: mirror::definition(),
            key_converter: Converter::Bytes,
            value_converter: Converter::Bytes,
            make: || Connector::Source(Arc::new(mirror::MirrorSource)),
        },
    ]
}

/// The plugin for a `connector.class`.
pub fn find(class: &str) -> Option<Plugin> {
    all().into_iter().find(|p| p.class == class)
}
