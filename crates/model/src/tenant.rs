//! Tenant ids: the scope of every storage and query call.

use std::fmt;
use std::sync::Arc;

use crate::ModelError;

/// A validated tenant id. Valid ids are 1–150 characters of `[a-zA-Z0-9_.-]`, not `.` or `..`,
/// so an id is always safe as a single path segment or object-store key segment.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// The tenant used when auth is off and no `X-Scope-OrgID` is sent.
    pub const DEFAULT: &'static str = "default";

    pub fn new(id: &str) -> Result<TenantId, ModelError> {
        let ok = !id.is_empty()
            && id.len() <= 150
            && id != "."
            && id != ".."
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok { Ok(TenantId(id.into())) } else { Err(ModelError::InvalidTenant(id.to_string())) }
    }

    pub fn default_tenant() -> TenantId {
        TenantId(Self::DEFAULT.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_tenant_ids() {
        for ok in ["default", "team-a", "a.b_c", "X9"] {
            assert_eq!(TenantId::new(ok).unwrap().as_str(), ok);
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(151)] {
            assert_eq!(TenantId::new(bad), Err(ModelError::InvalidTenant(bad.to_string())));
        }
    }
}
