//! The sender rules added at runtime (`mxhook senders`), and the generation number a running server
//! watches to take them in without a restart.

use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::time::now_ms;

/// A rule as stored: its canonical text (checked by the caller), and which list it is on.
#[derive(Debug, Clone)]
pub struct SenderRule {
    pub rule: String,
    pub allow: bool,
    pub added_at: i64,
}

fn list(allow: bool) -> &'static str {
    if allow { "allow" } else { "block" }
}

impl Sqlite {
    /// The generation of the stored rules: it changes whenever they do. A read on the delivery
    /// connection, so it never waits for a group commit.
    pub fn sender_rules_generation(&self) -> anyhow::Result<i64> {
        let conn = self.deliver_conn();
        Ok(conn.query_row("SELECT generation FROM sender_rules_generation", [], |r| r.get(0))?)
    }

    /// Every stored rule with the generation it belongs to, read in one transaction.
    pub fn sender_rules(&self) -> anyhow::Result<(i64, Vec<SenderRule>)> {
        let mut conn = self.deliver_conn();
        let tx = conn.transaction()?;
        let generation = tx.query_row("SELECT generation FROM sender_rules_generation", [], |r| r.get(0))?;
        let rules = {
            let mut stmt = tx.prepare("SELECT rule, list, added_at FROM sender_rules ORDER BY list, rule")?;
            stmt.query_map([], |r| {
                Ok(SenderRule { rule: r.get(0)?, allow: r.get::<_, String>(1)? == "allow", added_at: r.get(2)? })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.finish()?;
        Ok((generation, rules))
    }

    /// Puts a rule on a list (moving it from the other one). False: it was there already.
    pub fn set_sender_rule(&self, rule: &str, allow: bool) -> anyhow::Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let was: Option<String> =
            tx.query_row("SELECT list FROM sender_rules WHERE rule = ?1", [rule], |r| r.get(0)).optional()?;
        if was.as_deref() == Some(list(allow)) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO sender_rules (rule, list, added_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (rule) DO UPDATE SET list = excluded.list, added_at = excluded.added_at",
            params![rule, list(allow), now_ms()],
        )?;
        tx.execute("UPDATE sender_rules_generation SET generation = generation + 1", [])?;
        tx.commit()?;
        Ok(true)
    }

    /// Takes a rule off whichever list it is on. False: it was on none.
    pub fn remove_sender_rule(&self, rule: &str) -> anyhow::Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if tx.execute("DELETE FROM sender_rules WHERE rule = ?1", [rule])? == 0 {
            return Ok(false);
        }
        tx.execute("UPDATE sender_rules_generation SET generation = generation + 1", [])?;
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::Sqlite;

    #[test]
    fn every_change_moves_the_generation_and_a_no_op_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path()).unwrap();
        let g0 = store.sender_rules_generation().unwrap();
        assert!(store.set_sender_rule("example.com", false).unwrap());
        assert!(!store.set_sender_rule("example.com", false).unwrap());
        let g1 = store.sender_rules_generation().unwrap();
        assert!(g1 > g0);
        assert!(store.set_sender_rule("example.com", true).unwrap(), "moving to the other list is a change");
        let (g2, rules) = store.sender_rules().unwrap();
        assert!(g2 > g1);
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow);
        assert!(store.remove_sender_rule("example.com").unwrap());
        assert!(!store.remove_sender_rule("example.com").unwrap());
        assert!(store.sender_rules().unwrap().1.is_empty());
        drop(store);
        let again = Sqlite::open(dir.path()).unwrap();
        assert!(again.sender_rules_generation().unwrap() > g2, "reopening keeps the one generation row");
    }
}
