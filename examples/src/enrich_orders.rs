//! Order enrichment: a stream of orders joined with a table of customers.

use headwater_streams::serde::{Json, Utf8};
use headwater_streams::{Consumed, Materialized, Produced, Repartitioned, StreamsBuilder, StreamsError, Topology};
use serde::{Deserialize, Serialize};

/// An order, keyed by its id: `{"order_id": "o1", "customer_id": "c1", "amount_cents": 1250}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub amount_cents: i64,
}

/// A customer, keyed by its id, on a compacted topic: `{"name": "Ada", "tier": "gold"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub name: String,
    pub tier: String,
}

/// An order with what is known of its customer (`None` for a customer not seen yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichedOrder {
    pub order_id: String,
    pub customer_id: String,
    pub amount_cents: i64,
    pub customer_name: Option<String>,
    pub tier: Option<String>,
}

/// Re-keys orders by customer (through `<app-id>-orders-by-customer-repartition`, so they
/// meet the customers table in the same task), left-joins the table, and writes the
/// enriched orders keyed by order id again.
///
/// # Errors
/// Never for these operators.
pub fn topology(orders: &str, customers: &str, output: &str) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    let customers =
        builder.table(customers, Consumed::with(Utf8, Json::<Customer>::new()), Materialized::as_store("customers"));
    builder
        .stream(orders, Consumed::with(Utf8, Json::<Order>::new()))
        .select_key(|_, order: &Order| order.customer_id.clone())
        .repartition(Repartitioned::with(Utf8, Json::<Order>::new()).named("orders-by-customer"))
        .left_join(&customers, |order: &Order, customer: Option<&Customer>| EnrichedOrder {
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            amount_cents: order.amount_cents,
            customer_name: customer.map(|c| c.name.clone()),
            tier: customer.map(|c| c.tier.clone()),
        })
        .select_key(|_, enriched: &EnrichedOrder| enriched.order_id.clone())
        .to(output, Produced::with(Utf8, Json::<EnrichedOrder>::new()));
    builder.build()
}
