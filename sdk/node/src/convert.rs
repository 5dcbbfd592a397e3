//! JavaScript values to Rust values: the binding's only checks of its own.
//!
//! The option structs (`config/`) are typed `#[napi(object)]` structs whose fields are
//! [`Js<T>`]: napi-rs reads each field by name, and a value of the wrong type is kept as
//! [`Invalid`] (with a description of what was given) instead of failing with napi's
//! generic message, so the error can name the option's path
//! (`lanes.api.timeoutMs must be a number, got the string "5s"`). [`At`] names a value
//! and turns JavaScript numbers into the Rust types the core takes: whole numbers that
//! fit their type, milliseconds into a `Duration` — nothing rounded, wrapped or clamped.
//! Rules about the values themselves (a cap of at least 1, a delay no longer than its
//! maximum) are the core's: its `ConfigError` reaches JavaScript as it is.
//!
//! Wrong types are `TypeError`s, values a Rust type cannot hold `RangeError`s; options
//! carry code `CONFIG`, method arguments code `INVALID_ARGUMENT`.

use std::borrow::Cow;
use std::ffi::CString;
use std::ptr;
use std::time::Duration;

use napi::bindgen_prelude::{FromNapiValue, Object};
use napi::{Env, ValueType, sys};

use crate::error::JsFailure;

/// The largest whole number a JavaScript number holds exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A value JavaScript passed where a `T` was expected: the `T`, or what is wrong with it.
#[derive(Debug, Clone)]
pub enum Js<T> {
    /// A value of the expected type.
    Ok(T),
    /// Something else.
    Invalid(Invalid),
}

impl<T> Js<T> {
    /// The value, or the error naming it `at`.
    pub fn get(self, at: &At<'_>) -> Result<T, JsFailure> {
        match self {
            Self::Ok(value) => Ok(value),
            Self::Invalid(invalid) => Err(invalid.failure(at)),
        }
    }
}

impl<T: FromJs> FromNapiValue for Js<T> {
    unsafe fn from_napi_value(env: sys::napi_env, raw: sys::napi_value) -> napi::Result<Self> {
        Ok(match T::from_js(Given { env, raw })? {
            Ok(value) => Self::Ok(value),
            Err(invalid) => Self::Invalid(invalid),
        })
    }
}

/// What is wrong with a value, before the path of the value is known.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// Where below the value the problem is: `""`, `".key"` or `"[2].key"`.
    at: String,
    problem: Problem,
}

#[derive(Debug, Clone)]
enum Problem {
    /// A value of the wrong type.
    Type { expected: &'static str, got: String },
    /// A key the options object does not have (most often a typo).
    UnknownKey {
        key: String,
        known: &'static [&'static str],
    },
    /// A required key is missing.
    Missing {
        key: &'static str,
        hint: &'static str,
    },
}

impl Invalid {
    fn new(problem: Problem) -> Self {
        Self {
            at: String::new(),
            problem,
        }
    }

    /// The same problem, found `below` (`".key"`, `"[2]"`) the value being read.
    pub fn below(mut self, below: &str) -> Self {
        self.at.insert_str(0, below);
        self
    }

    fn failure(&self, at: &At<'_>) -> JsFailure {
        let path = format!("{}{}", at.path, self.at);
        let message = match &self.problem {
            Problem::Type { expected, got } => format!("{path} must be {expected}, got {got}"),
            Problem::UnknownKey { key, known } => format!(
                "{path}: unknown option '{key}'; known options: {}",
                known.join(", ")
            ),
            Problem::Missing { key, hint } => format!("{path}.{key} is required ({hint})"),
        };
        JsFailure::type_error(at.code, message)
    }
}

/// What reading a value gave: the value, or what is wrong with it. `Err` only when
/// JavaScript itself failed (a getter threw), to be rethrown as it is.
pub type Read<T> = napi::Result<Result<T, Invalid>>;

/// How a JavaScript value becomes a `Self`, or says what it should have been.
pub trait FromJs: Sized {
    /// What JavaScript must pass, for messages ("a number").
    const EXPECTED: &'static str;

    /// Reads `value`.
    fn from_js(value: Given) -> Read<Self>;
}

/// A value JavaScript gave, during the call that gave it.
///
/// It holds Node-API handles (`napi_env`, `napi_value`), which are opaque: they are
/// never dereferenced here, only handed back to Node-API, and only while the call that
/// received them runs (as napi-rs's own `Object::from_raw` does).
#[derive(Debug, Clone, Copy)]
pub struct Given {
    env: sys::napi_env,
    raw: sys::napi_value,
}

impl Given {
    /// The value a `#[napi]` method received as `value`.
    pub fn of<'v>(env: &Env, value: &impl napi::JsValue<'v>) -> Self {
        Self {
            env: env.raw(),
            raw: value.raw(),
        }
    }

    /// A value napi-rs handed over.
    ///
    /// # Safety
    /// The handles are those of the current call into the addon.
    pub unsafe fn from_raw(env: sys::napi_env, raw: sys::napi_value) -> Self {
        Self { env, raw }
    }

    /// The handles, for Node-API.
    pub fn raw(self) -> (sys::napi_env, sys::napi_value) {
        (self.env, self.raw)
    }

    /// Its type.
    pub fn kind(self) -> napi::Result<ValueType> {
        let mut kind = 0;
        napi::check_status!(unsafe { sys::napi_typeof(self.env, self.raw, &mut kind) })?;
        Ok(ValueType::from(kind))
    }

    /// Whether it is an array.
    pub fn is_array(self) -> napi::Result<bool> {
        let mut array = false;
        napi::check_status!(unsafe { sys::napi_is_array(self.env, self.raw, &mut array) })?;
        Ok(array)
    }

    /// Whether it is a `Date`.
    pub fn is_date(self) -> napi::Result<bool> {
        let mut date = false;
        napi::check_status!(unsafe { sys::napi_is_date(self.env, self.raw, &mut date) })?;
        Ok(date)
    }

    /// The time of a `Date` (checked with [`is_date`](Self::is_date)), in milliseconds
    /// since the Unix epoch: `NaN` for an invalid date.
    pub fn date_value(self) -> napi::Result<f64> {
        let mut ms = 0.0;
        napi::check_status!(unsafe { sys::napi_get_date_value(self.env, self.raw, &mut ms) })?;
        Ok(ms)
    }

    /// Whether it can be an options object (or a map): an object that is not an array.
    pub fn is_object(self) -> napi::Result<bool> {
        Ok(self.kind()? == ValueType::Object && !self.is_array()?)
    }

    /// Converts it with napi-rs.
    pub fn to<T: FromNapiValue>(self) -> napi::Result<T> {
        // SAFETY: the handles are those of the current call.
        unsafe { T::from_napi_value(self.env, self.raw) }
    }

    /// `self[key]`.
    pub fn get(self, key: &str) -> napi::Result<Given> {
        let key = CString::new(key)?;
        let mut raw = ptr::null_mut();
        napi::check_status!(unsafe {
            sys::napi_get_named_property(self.env, self.raw, key.as_ptr(), &mut raw)
        })?;
        Ok(Self { raw, ..self })
    }

    /// Its own enumerable string keys whose value is not `undefined`, in order.
    pub fn keys(self) -> napi::Result<Vec<String>> {
        let mut names = ptr::null_mut();
        napi::check_status!(unsafe {
            sys::napi_get_all_property_names(
                self.env,
                self.raw,
                sys::KeyCollectionMode::own_only,
                sys::KeyFilter::enumerable | sys::KeyFilter::skip_symbols,
                sys::KeyConversion::numbers_to_strings,
                &mut names,
            )
        })?;
        let names: Vec<String> = Self { raw: names, ..self }.to()?;
        let mut present = Vec::with_capacity(names.len());
        for name in names {
            if self.get(&name)?.kind()? != ValueType::Undefined {
                present.push(name);
            }
        }
        Ok(present)
    }

    /// The items of an array.
    pub fn items(self) -> napi::Result<Vec<Given>> {
        let mut length = 0;
        napi::check_status!(unsafe {
            sys::napi_get_array_length(self.env, self.raw, &mut length)
        })?;
        (0..length)
            .map(|index| {
                let mut raw = ptr::null_mut();
                napi::check_status!(unsafe {
                    sys::napi_get_element(self.env, self.raw, index, &mut raw)
                })?;
                Ok(Self { raw, ..self })
            })
            .collect()
    }

    /// How it is named in messages: `5`, `NaN`, `the string "5s"`, `an array`,
    /// `a function`, `an instance of Date`.
    pub fn describe(self) -> napi::Result<String> {
        Ok(match self.kind()? {
            ValueType::Undefined => "undefined".into(),
            ValueType::Null => "null".into(),
            ValueType::Boolean => self.to::<bool>()?.to_string(),
            ValueType::Number => number_text(self.to()?),
            ValueType::String => format!("the string {:?}", self.to::<String>()?),
            ValueType::Function => "a function".into(),
            ValueType::Symbol => "a symbol".into(),
            ValueType::BigInt => "a bigint".into(),
            ValueType::Object if self.is_array()? => "an array".into(),
            ValueType::Object => {
                let name = Object::from_raw(self.env, self.raw)
                    .get::<Object<'_>>("constructor")
                    .ok()
                    .flatten()
                    .and_then(|constructor| constructor.get::<String>("name").ok().flatten());
                match name.as_deref() {
                    None | Some("" | "Object") => "an object".into(),
                    Some(name) => format!("an instance of {name}"),
                }
            }
            _ => "an unsupported value".into(),
        })
    }

    /// The problem of a value that is not a `T`.
    pub fn unexpected<T: FromJs>(self) -> Read<T> {
        self.wrong(T::EXPECTED)
    }

    /// The problem of a value that is not `expected`.
    pub fn wrong<T>(self, expected: &'static str) -> Read<T> {
        Ok(Err(Invalid::new(Problem::Type {
            expected,
            got: self.describe()?,
        })))
    }

    /// Reads an options object (a `#[napi(object)]` struct whose fields are all `Js<_>`):
    /// an object with only `known` keys and every `required` one.
    pub fn options<T: FromNapiValue>(
        self,
        expected: &'static str,
        known: &'static [&'static str],
        required: &'static [(&'static str, &'static str)],
    ) -> Read<T> {
        if !self.is_object()? {
            return self.wrong(expected);
        }
        if let Some(key) = self
            .keys()?
            .into_iter()
            .find(|key| !known.contains(&&**key))
        {
            return Ok(Err(Invalid::new(Problem::UnknownKey { key, known })));
        }
        for &(key, hint) in required {
            if self.get(key)?.kind()? == ValueType::Undefined {
                return Ok(Err(Invalid::new(Problem::Missing { key, hint })));
            }
        }
        // Every field is a `Js<_>`, which only fails when JavaScript does.
        Ok(Ok(self.to()?))
    }

    /// Reads an object used as a map (`{ laneId: options }`), in order.
    pub fn entries<T: FromJs>(self) -> napi::Result<Vec<(String, Js<T>)>> {
        self.keys()?
            .into_iter()
            .map(|key| Ok((key.clone(), self.get(&key)?.to()?)))
            .collect()
    }

    /// Reads the items of an array, each a `T`.
    pub fn array<T: FromJs>(self) -> Read<Vec<T>> {
        let mut items = Vec::new();
        for (index, item) in self.items()?.into_iter().enumerate() {
            match T::from_js(item)? {
                Ok(item) => items.push(item),
                Err(invalid) => return Ok(Err(invalid.below(&format!("[{index}]")))),
            }
        }
        Ok(Ok(items))
    }
}

/// Implements [`FromJs`] for an options struct: what it looks like, its keys as
/// JavaScript spells them, and the required ones with a hint of what they hold.
macro_rules! options_object {
    ($options:ty, $expected:literal, [$($key:literal),* $(,)?] $(, required: [$(($required:literal, $hint:literal)),* $(,)?])?) => {
        impl $crate::convert::FromJs for $options {
            const EXPECTED: &'static str = $expected;

            fn from_js(value: $crate::convert::Given) -> $crate::convert::Read<Self> {
                value.options(Self::EXPECTED, &[$($key),*], &[$($(($required, $hint)),*)?])
            }
        }
    };
}
pub(crate) use options_object;

macro_rules! primitive {
    ($type:ty, $kind:ident, $expected:literal) => {
        impl FromJs for $type {
            const EXPECTED: &'static str = $expected;

            fn from_js(value: Given) -> Read<Self> {
                if value.kind()? != ValueType::$kind {
                    return value.unexpected();
                }
                Ok(Ok(value.to()?))
            }
        }
    };
}

primitive!(f64, Number, "a number");
primitive!(String, String, "a string");
primitive!(bool, Boolean, "true or false");

/// A number, or `null` for none (`maxConcurrency: null`: no global budget).
impl FromJs for Option<f64> {
    const EXPECTED: &'static str = "a number or null";

    fn from_js(value: Given) -> Read<Self> {
        match value.kind()? {
            ValueType::Null => Ok(Ok(None)),
            ValueType::Number => Ok(Ok(Some(value.to()?))),
            _ => value.unexpected(),
        }
    }
}

/// A number as JavaScript prints it (`5`, `1.5`, `NaN`, `Infinity`).
pub fn number_text(n: f64) -> String {
    match n {
        f64::INFINITY => "Infinity".into(),
        f64::NEG_INFINITY => "-Infinity".into(),
        _ => n.to_string(),
    }
}

/// Names a value in messages and converts JavaScript numbers for the core.
#[derive(Debug, Clone)]
pub struct At<'a> {
    path: Cow<'a, str>,
    code: &'static str,
}

impl<'a> At<'a> {
    /// An option (code `CONFIG`), by its path: `lanes.api`, `options`.
    pub fn option(path: impl Into<Cow<'a, str>>) -> Self {
        Self {
            path: path.into(),
            code: "CONFIG",
        }
    }

    /// A method argument (code `INVALID_ARGUMENT`), by its name.
    pub fn argument(name: impl Into<Cow<'a, str>>) -> Self {
        Self {
            path: name.into(),
            code: "INVALID_ARGUMENT",
        }
    }

    /// The field `key` of this value.
    pub fn key(&self, key: &str) -> At<'static> {
        At {
            path: format!("{}.{key}", self.path).into(),
            code: self.code,
        }
    }

    /// The path, for messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Converts the field `key` of this options object with `convert`.
    pub fn take<T, U>(
        &self,
        key: &str,
        value: Js<T>,
        convert: impl FnOnce(&At<'static>, T) -> Result<U, JsFailure>,
    ) -> Result<U, JsFailure> {
        let at = self.key(key);
        convert(&at, value.get(&at)?)
    }

    /// Converts the field `key` of this options object, if given, with `convert`.
    pub fn field<T, U>(
        &self,
        key: &str,
        value: Option<Js<T>>,
        convert: impl FnOnce(&At<'static>, T) -> Result<U, JsFailure>,
    ) -> Result<Option<U>, JsFailure> {
        value
            .map(|value| self.take(key, value, convert))
            .transpose()
    }

    /// The error of a required value left out: `{path} is required ({hint})`.
    pub fn required(&self, hint: &str) -> JsFailure {
        self.type_error(format!("{} is required ({hint})", self.path))
    }

    /// A `RangeError` with this value's code.
    pub fn range_error(&self, message: impl Into<String>) -> JsFailure {
        JsFailure::range_error(self.code, message)
    }

    /// A `TypeError` with this value's code.
    pub fn type_error(&self, message: impl Into<String>) -> JsFailure {
        JsFailure::type_error(self.code, message)
    }

    fn out_of_range(&self, what: &str, n: f64) -> JsFailure {
        self.range_error(format!(
            "{} must be {what}, got {}",
            self.path,
            number_text(n)
        ))
    }

    fn finite(&self, n: f64) -> Result<f64, JsFailure> {
        if n.is_finite() {
            Ok(n)
        } else {
            Err(self.out_of_range("a finite number", n))
        }
    }

    /// A whole number from 0 to `max` (the largest value of the Rust type it becomes).
    pub fn whole(&self, n: f64, max: u64) -> Result<u64, JsFailure> {
        if self.finite(n)?.fract() != 0.0 {
            return Err(self.out_of_range("a whole number", n));
        }
        if n < 0.0 || n > max as f64 {
            return Err(self.out_of_range(&format!("between 0 and {max}"), n));
        }
        Ok(n as u64)
    }

    /// A `u8` (a priority, a boost).
    pub fn u8(&self, n: f64) -> Result<u8, JsFailure> {
        Ok(self.whole(n, u8::MAX.into())? as u8)
    }

    /// A `u32` (a count, a rate).
    pub fn u32(&self, n: f64) -> Result<u32, JsFailure> {
        Ok(self.whole(n, u32::MAX.into())? as u32)
    }

    /// A count of slots or commands, up to 2^32 - 1 (so sums of them never overflow).
    pub fn count(&self, n: f64) -> Result<usize, JsFailure> {
        Ok(self.u32(n)? as usize)
    }

    /// Milliseconds, 0 or more, as a `Duration`.
    pub fn millis(&self, ms: f64) -> Result<Duration, JsFailure> {
        if self.finite(ms)? < 0.0 {
            return Err(self.out_of_range("0 or more", ms));
        }
        Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
            let ms = number_text(ms);
            self.range_error(format!("{} is too large: {ms} milliseconds", self.path))
        })
    }

    /// A name (a lane id, a command type, an event key): a non-empty string.
    pub fn name(&self, value: Js<String>) -> Result<String, JsFailure> {
        let name = value.get(self)?;
        if name.is_empty() {
            return Err(self.range_error(format!("{} must not be empty", self.path)));
        }
        Ok(name)
    }
}

/// A command id argument: a whole number from 0 to 2^53 - 1.
pub fn command_id(value: Js<f64>) -> Result<a3s_lane::CommandId, JsFailure> {
    let at = At::argument("commandId");
    match value.get(&at)? {
        n if n >= 0.0 && n.fract() == 0.0 && n <= MAX_SAFE_INTEGER as f64 => Ok(n as u64),
        n => Err(at.range_error(format!(
            "commandId must be a whole number of 0 or more, got {}",
            number_text(n)
        ))),
    }
}

/// Throws unless `value` is a function; `what` says whose function it is.
pub fn function<'v>(env: &Env, what: &str, value: &impl napi::JsValue<'v>) -> napi::Result<()> {
    let value = Given::of(env, value);
    if value.kind()? == ValueType::Function {
        return Ok(());
    }
    let got = value.describe()?;
    Err(At::argument(what)
        .type_error(format!("{what} must be a function, got {got}"))
        .throw(env))
}
