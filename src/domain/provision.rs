//! Provisioning as every mode has it: the four requests a mode answers (bind, modify, unbind,
//! query), named by [`Provisioning`], and the parts of them that modes share: how the X of a new
//! binding is chosen ([`XSelection`]), paging ([`Page`]) and `subscriptionId`.
//!
//! Invariant: a mode's requests are parsed only through its [`Provisioning`] implementation, so
//! the HTTP layer serves every mode with one set of handlers and a new mode adds one type here.

use super::binding::Recorded;
use super::fields::{Fields, Invalid};
use super::{App, Mode};

/// A mode's provisioning requests and their parsing; implemented once per mode, by a marker type
/// in the mode's own module (`AxbMode`, `AxMode`, `AxeMode`).
pub trait Provisioning {
    /// The mode whose API this is.
    const MODE: Mode;
    /// A binding as privnum keeps it.
    type Binding: Recorded + Clone + Send + Sync + 'static;
    /// A validated bind.
    type Bind: Send + 'static;
    /// A validated modify.
    type Modify: Send + 'static;
    /// What an unbind removes.
    type Unbind: Send + 'static;
    /// A validated query.
    type Query: Send + 'static;

    /// Reads a bind; `app` is the app binding (some modes read its settings, e.g. AXE's extension
    /// length).
    fn parse_bind(fields: &Fields<'_>, app: &App) -> Result<Self::Bind, Invalid>;
    fn parse_modify(fields: &Fields<'_>) -> Result<Self::Modify, Invalid>;
    fn parse_unbind(fields: &Fields<'_>) -> Result<Self::Unbind, Invalid>;
    fn parse_query(fields: &Fields<'_>) -> Result<Self::Query, Invalid>;

    /// Every tone a bind names, in the order its fields are listed: each must be an approved tone
    /// of the app, and the first that is not is the one refused.
    fn bind_tones(request: &Self::Bind) -> Vec<&str>;
    /// Every tone a modify names, as [`Provisioning::bind_tones`].
    fn modify_tones(request: &Self::Modify) -> Vec<&str>;
    /// Whether a modify turns recording on, so the binding's recording notice is looked at again.
    fn modify_records(request: &Self::Modify) -> bool;
}

/// How the X of a new binding is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XSelection {
    /// The mode's X field (`relationNum`, `privateNum`, `virtualNum`): this X, or an error.
    Number(String),
    /// `areaCode` (+ `areaMatchMode`): the store picks a free X.
    Area { area_code: String, lenient: bool },
}

impl XSelection {
    /// Reads `areaCode`, `areaMatchMode` and the mode's X field, `x_field`, which wins over the
    /// area code (README, Provisioning API); one of the two is required.
    pub fn parse(fields: &Fields<'_>, x_field: &str) -> Result<Self, Invalid> {
        let area_code = fields.area_code("areaCode")?;
        let lenient = fields.switch01("areaMatchMode")?.unwrap_or(false);
        match (fields.number(x_field)?, area_code) {
            (Some(x_number), _) => Ok(XSelection::Number(x_number.to_owned())),
            (None, Some(area_code)) => Ok(XSelection::Area { area_code: area_code.to_owned(), lenient }),
            (None, None) => Err(Invalid::new(x_field, "or areaCode is required")),
        }
    }

    /// The X asked for by number, if it was.
    pub fn number(&self) -> Option<&str> {
        match self {
            XSelection::Number(x_number) => Some(x_number),
            XSelection::Area { .. } => None,
        }
    }
}

/// `subscriptionId`, which names one binding and wins over the numbers in every request.
pub(crate) fn subscription_id<'a>(fields: &Fields<'a>) -> Result<Option<&'a str>, Invalid> {
    fields.bounded_string("subscriptionId", 64)
}

/// One page of a list query. `pageIndex` counts from 1; `pageSize` outside 10..=100 means 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub index: u32,
    pub size: u32,
}

impl Page {
    pub const DEFAULT_SIZE: u32 = 50;

    pub fn parse(fields: &Fields<'_>) -> Result<Self, Invalid> {
        let index = fields.integer("pageIndex", i64::MIN..=i64::MAX)?.unwrap_or(1).clamp(1, u32::MAX.into());
        let size = match fields.integer("pageSize", i64::MIN..=i64::MAX)? {
            Some(size @ 10..=100) => size,
            _ => Self::DEFAULT_SIZE.into(),
        };
        // Both values were clamped into u32 range above.
        Ok(Page { index: u32::try_from(index).unwrap_or(1), size: u32::try_from(size).unwrap_or(Self::DEFAULT_SIZE) })
    }

    /// How many items precede this page.
    pub fn skip(&self) -> usize {
        (self.index as usize - 1).saturating_mul(self.size as usize)
    }

    /// This page of `items`.
    pub fn of<T>(&self, items: Vec<T>) -> Vec<T> {
        items.into_iter().skip(self.skip()).take(self.size as usize).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn page_size_out_of_range_means_fifty() {
        let page = |v: Value| Page::parse(&Fields::new(v.as_object().unwrap())).unwrap();
        assert_eq!(page(json!({})), Page { index: 1, size: 50 });
        assert_eq!(page(json!({"pageSize": "5"})).size, 50);
        assert_eq!(page(json!({"pageSize": 101})).size, 50);
        assert_eq!(page(json!({"pageSize": 10, "pageIndex": 0})), Page { index: 1, size: 10 });
        assert_eq!(page(json!({"pageIndex": 3, "pageSize": 20})).skip(), 40);
    }

    #[test]
    fn the_x_field_wins_over_the_area_code_and_one_is_required() {
        let fields = |v: &Value| XSelection::parse(&Fields::new(v.as_object().unwrap()), "privateNum");
        let both = json!({"privateNum": "+8617000000001", "areaCode": "0755", "areaMatchMode": "1"});
        assert_eq!(fields(&both).unwrap(), XSelection::Number("+8617000000001".into()));
        let area = json!({"areaCode": "0755", "areaMatchMode": 1});
        assert_eq!(fields(&area).unwrap(), XSelection::Area { area_code: "0755".into(), lenient: true });
        assert_eq!(fields(&json!({})).unwrap_err().field, "privateNum");
    }
}
