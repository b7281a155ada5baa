//! Credentials, read from the environment variables a definition names.
//!
//! Values never appear in `Debug` output, errors or logs: [`Secret`] prints as `***`.

use std::fmt;

use crate::definition::{Adapter, ProviderDef};
use crate::{Error, Result};

/// A credential value that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The credentials of one provider, in `auth_env` order.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    values: Vec<Option<Secret>>,
}

impl Credentials {
    /// Reads the variables `def.auth_env` names. Every variable is required except the AWS
    /// session token (the third AWS variable). A missing one is an error naming it, before
    /// any call is made.
    pub fn from_env(def: &ProviderDef) -> Result<Credentials> {
        Credentials::from_lookup(def, |var| std::env::var(var).ok())
    }

    /// As [`Credentials::from_env`], with `lookup` in place of the environment.
    pub fn from_lookup(
        def: &ProviderDef,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials> {
        let mut values = Vec::new();
        for (i, var) in def.auth_env.iter().enumerate() {
            let value = lookup(var).filter(|v| !v.trim().is_empty());
            let optional = def.adapter == Adapter::Aws && i >= 2;
            if value.is_none() && !optional {
                return Err(Error::MissingCredential {
                    provider: def.name.clone(),
                    var: var.clone(),
                });
            }
            values.push(value.map(|v| Secret::new(v.trim())));
        }
        Ok(Credentials { values })
    }

    /// The `i`-th credential (in `auth_env` order), if set.
    pub fn get(&self, i: usize) -> Option<&Secret> {
        self.values.get(i).and_then(Option::as_ref)
    }

    /// Every value set, to scrub from anything that might be shown.
    pub fn all(&self) -> impl Iterator<Item = &Secret> {
        self.values.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_are_named_and_values_never_print() {
        let google = ProviderDef::load("google").unwrap();
        let err = Credentials::from_lookup(&google, |_| None).unwrap_err();
        assert!(err.to_string().contains("GOOGLE_API_KEY"), "{err}");
        let creds = Credentials::from_lookup(&google, |_| Some("s3cret".into())).unwrap();
        assert_eq!(creds.get(0).unwrap().expose(), "s3cret");
        assert!(!format!("{creds:?}").contains("s3cret"));
        // AWS: the session token is optional, the key pair is not.
        let aws = ProviderDef::load("aws").unwrap();
        let creds = Credentials::from_lookup(&aws, |v| {
            (v != "AWS_SESSION_TOKEN").then(|| "x".to_string())
        })
        .unwrap();
        assert!(creds.get(2).is_none());
        let err = Credentials::from_lookup(&aws, |v| {
            (v == "AWS_ACCESS_KEY_ID").then(|| "x".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    }
}
