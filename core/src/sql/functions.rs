//! Functions over topics' bytes: the JSON functions (`json_get_str(value, 'user')`,
//! `value ->> 'user'`, from the datafusion-functions-json crate) take Kafka's `key` and
//! `value` columns, which are bytes, by reading them as UTF-8 text (NULL where they are
//! not valid UTF-8).
//!
//! Three small pieces, because the crate checks argument types at three stages:
//! the operators are planned by an [`ExprPlanner`] (ours runs first and casts a bytes
//! operand), calls are typed while the plan is built (the functions are registered
//! behind [`AcceptBytes`], which types bytes as text), and rewritten by the crate's
//! analyzer rule (ours runs first and casts the bytes argument for the real function).

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::expr::{ScalarFunction, TryCast};
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

/// The crate's functions whose first argument is the JSON document.
const JSON_FUNCTIONS: &[&str] = &[
    "json_get",
    "json_get_bool",
    "json_get_float",
    "json_get_int",
    "json_get_json",
    "json_get_array",
    "json_as_text",
    "json_get_str",
    "json_contains",
    "json_length",
    "json_object_keys",
];

/// Registers the JSON functions so that they accept bytes.
///
/// # Errors
/// A function that does not register.
pub fn register(registry: &mut dyn FunctionRegistry) -> Result<()> {
    // Ours go first: each stage consults them before the crate's own.
    registry.register_expr_planner(Arc::new(BytesJsonOperators))?;
    registry.register_function_rewrite(Arc::new(BytesAsJsonText))?;
    datafusion_functions_json::register_all(registry)?;
    for name in JSON_FUNCTIONS {
        if let Ok(inner) = registry.udf(name) {
            registry.register_udf(Arc::new(ScalarUDF::new_from_impl(AcceptBytes::new(inner))))?;
        }
    }
    Ok(())
}

fn is_bytes(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
}

/// `TRY_CAST(expr AS VARCHAR)`: text, or NULL for bytes that are not UTF-8.
fn as_text(expr: Expr) -> Expr {
    Expr::TryCast(TryCast::new(Box::new(expr), DataType::Utf8))
}

/// Casts a bytes left operand of `->`, `->>`, `#>`, `#>>` and `?`.
#[derive(Debug)]
struct BytesJsonOperators;

impl ExprPlanner for BytesJsonOperators {
    fn plan_binary_op(&self, mut expr: RawBinaryExpr, schema: &DFSchema) -> Result<PlannerResult<RawBinaryExpr>> {
        let json_operator = matches!(
            expr.op,
            BinaryOperator::Arrow
                | BinaryOperator::LongArrow
                | BinaryOperator::HashArrow
                | BinaryOperator::HashLongArrow
                | BinaryOperator::Question
        );
        if json_operator && expr.left.get_type(schema).is_ok_and(|t| is_bytes(&t)) {
            // A plain CAST here, which the JSON planner leaves out of the column's name
            // (`value ->> 'user'`); `BytesAsJsonText` makes it a TRY_CAST before it runs.
            expr.left = Expr::Cast(datafusion::logical_expr::expr::Cast::new(Box::new(expr.left), DataType::Utf8));
        }
        Ok(PlannerResult::Original(expr))
    }
}

/// Replaces a call with a bytes document by the real function over its text.
#[derive(Debug)]
struct BytesAsJsonText;

impl FunctionRewrite for BytesAsJsonText {
    fn name(&self) -> &str {
        "headwater_bytes_as_json_text"
    }

    fn rewrite(&self, expr: Expr, schema: &DFSchema, _config: &ConfigOptions) -> Result<Transformed<Expr>> {
        let Expr::ScalarFunction(call) = &expr else { return Ok(Transformed::no(expr)) };
        let inner = call.func.inner().as_ref() as &dyn Any;
        let func = match inner.downcast_ref::<AcceptBytes>() {
            Some(wrapper) => Arc::clone(&wrapper.inner),
            None if JSON_FUNCTIONS.contains(&call.func.name()) => Arc::clone(&call.func),
            None => return Ok(Transformed::no(expr)),
        };
        let mut args = call.args.clone();
        let of_bytes = |e: &Expr| e.get_type(schema).is_ok_and(|t| is_bytes(&t));
        let text = match args.first() {
            Some(first) if of_bytes(first) => Some(as_text(first.clone())),
            // The operators' CAST of bytes (see `BytesJsonOperators`): NULL, not an error,
            // for bytes that are not UTF-8.
            Some(Expr::Cast(cast)) if *cast.field.data_type() == DataType::Utf8 && of_bytes(&cast.expr) => {
                Some(as_text((*cast.expr).clone()))
            }
            _ => None,
        };
        let unwrapped = !Arc::ptr_eq(&func, &call.func);
        if text.is_none() && !unwrapped {
            return Ok(Transformed::no(expr));
        }
        if let Some(text) = text {
            args[0] = text;
        }
        Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(func, args))))
    }
}

/// A JSON function that types a bytes document as text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct AcceptBytes {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl AcceptBytes {
    fn new(inner: Arc<ScalarUDF>) -> Self {
        Self { inner, signature: Signature::variadic_any(Volatility::Immutable) }
    }
}

fn textify(types: &[DataType]) -> Vec<DataType> {
    types.iter().map(|t| if is_bytes(t) { DataType::Utf8 } else { t.clone() }).collect()
}

impl ScalarUDFImpl for AcceptBytes {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(&textify(arg_types))
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Normally replaced before it runs (BytesAsJsonText); correct regardless.
        let options = arrow::compute::CastOptions { safe: true, ..Default::default() };
        for (value, field) in args.args.iter_mut().zip(args.arg_fields.iter_mut()) {
            if !is_bytes(field.data_type()) {
                continue;
            }
            *value = match std::mem::replace(value, ColumnarValue::Scalar(ScalarValue::Null)) {
                ColumnarValue::Array(array) => {
                    ColumnarValue::Array(arrow::compute::cast_with_options(&array, &DataType::Utf8, &options)?)
                }
                ColumnarValue::Scalar(scalar) => ColumnarValue::Scalar(scalar.cast_to(&DataType::Utf8)?),
            };
            *field = Arc::new(Field::new(field.name(), DataType::Utf8, true));
        }
        self.inner.invoke_with_args(args)
    }
}
