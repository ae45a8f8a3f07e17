//! Calling a handler: one function used by live calls and by test cases alike, so a case proves
//! exactly what a call will do.

use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, Scope};

use super::engine::with_deadline;
use super::set::{locate, ScriptSet};
use super::Limits;
use crate::domain::Decision;

/// A handler that failed: where, and why. `location` is `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct RunError {
    pub location: String,
    pub message: String,
}

/// What a handler must return, and how to say so when it does not.
pub trait HandlerOutput: Clone + Send + Sync + 'static {
    const EXPECTED: &'static str;
}

impl HandlerOutput for Decision {
    const EXPECTED: &'static str = "a Decision (use connect(…) or release(…))";
}

/// A release handler returns a `stateCode`.
impl HandlerOutput for i64 {
    const EXPECTED: &'static str = "a state code (an integer such as state::INVALID_AXB_CALL)";
}

/// Runs `function(input)` from `file` of `set` within the limits' deadline.
pub fn call_handler<I: Clone + Send + Sync + 'static, O: HandlerOutput>(
    engine: &Engine,
    set: &ScriptSet,
    file: &str,
    function: &str,
    input: I,
    limits: &Limits,
) -> Result<O, RunError> {
    let path = set.path_of(file);
    let Some(ast) = set.script(file) else {
        return Err(RunError {
            location: path.display().to_string(),
            message: "no such script in this version".into(),
        });
    };
    // Handlers are functions: the top level of the file does not run per call.
    let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
    let result = with_deadline(limits.deadline, || {
        engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), ast, function, (input,))
    });
    match result {
        Ok(value) => {
            let type_name = value.type_name().to_owned();
            value.try_cast::<O>().ok_or_else(|| RunError {
                location: path.display().to_string(),
                message: format!("{function} returned {type_name}, not {}", O::EXPECTED),
            })
        }
        Err(err) => Err(RunError { location: locate(&path, err.position()), message: describe(&err, limits) }),
    }
}

fn describe(err: &EvalAltResult, limits: &Limits) -> String {
    match err {
        EvalAltResult::ErrorTerminated(..) => format!("stopped: ran past its deadline of {:?}", limits.deadline),
        EvalAltResult::ErrorTooManyOperations(..) => {
            format!("stopped: more than {} operations", limits.max_operations)
        }
        EvalAltResult::ErrorStackOverflow(..) => {
            format!("stopped: calls nested deeper than {}", limits.max_call_levels)
        }
        EvalAltResult::ErrorDataTooLarge(what, ..) => format!("stopped: {what} grew past the sandbox limit"),
        EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => format!("in {name}: {}", describe(inner, limits)),
        other => {
            // Rhai appends "(line L, position C)"; the location already says it.
            let text = other.to_string();
            text.split(" (line ").next().unwrap_or(&text).to_owned()
        }
    }
}
