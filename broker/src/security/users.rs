//! The users SASL authenticates: each user's SCRAM credentials by mechanism, as the
//! metadata log (single node) or etcd (cluster mode) holds them. PLAIN checks a
//! password against the same credentials, so there is one user store and no
//! password is kept anywhere.

use std::collections::BTreeMap;

use dashmap::DashMap;

use super::scram::{Mechanism, ScramCredential};

/// One user's credentials by mechanism.
pub type Credentials = BTreeMap<Mechanism, ScramCredential>;

#[derive(Debug, Default)]
pub struct Users {
    users: DashMap<String, Credentials>,
}

impl Users {
    pub fn new(all: impl IntoIterator<Item = (String, Credentials)>) -> Users {
        let users = Users::default();
        users.replace_all(all);
        users
    }

    pub fn credential(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.users.get(user).and_then(|c| c.get(&mechanism).cloned())
    }

    /// A user's credentials (empty for an unknown user).
    pub fn get(&self, user: &str) -> Credentials {
        self.users.get(user).map(|c| c.clone()).unwrap_or_default()
    }

    /// Every user's credentials, by name.
    pub fn all(&self) -> BTreeMap<String, Credentials> {
        self.users.iter().map(|e| (e.key().clone(), e.value().clone())).collect()
    }

    /// Replaces a user's credentials (empty removes the user).
    pub fn set(&self, user: &str, credentials: Credentials) {
        if credentials.is_empty() {
            self.users.remove(user);
        } else {
            self.users.insert(user.to_string(), credentials);
        }
    }

    pub fn replace_all(&self, all: impl IntoIterator<Item = (String, Credentials)>) {
        self.users.clear();
        for (user, credentials) in all {
            self.set(&user, credentials);
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// SASL/PLAIN: whether `password` is the user's, checked against the strongest
    /// credential the user has. An unknown user costs the same PBKDF2 as a known
    /// one, so the time taken does not tell which users exist.
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        let best = self.users.get(user).and_then(|c| c.iter().next_back().map(|(m, c)| (*m, c.clone())));
        match best {
            Some((m, credential)) => credential.matches_password(m, password),
            None => {
                let stand_in = ScramCredential::from_salted(Mechanism::Sha512, vec![0; 24], &[0; 64], 4096);
                let _ = stand_in.matches_password(Mechanism::Sha512, password);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_checks_against_the_scram_credential() {
        let users = Users::default();
        let mut c = Credentials::new();
        c.insert(Mechanism::Sha256, ScramCredential::from_password(Mechanism::Sha256, "pw", 4096));
        users.set("alice", c);
        assert!(users.check_password("alice", "pw"));
        assert!(!users.check_password("alice", "nope"));
        assert!(!users.check_password("bob", "pw"));
        users.set("alice", Credentials::new());
        assert!(users.is_empty());
    }
}
