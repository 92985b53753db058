//! The sender rules added at runtime (`mxhook senders`), shared by every gateway, and the generation
//! number each gateway's `senders/live.rs` watches to take them in without a restart.

use super::Postgres;
use crate::store::SenderRule;
use crate::time::now_ms;

fn list(allow: bool) -> &'static str {
    if allow { "allow" } else { "block" }
}

impl Postgres {
    pub(in crate::store) fn sender_rules_generation(&self) -> anyhow::Result<i64> {
        Ok(self.conn()?.query_one("SELECT generation FROM sender_rules_generation", &[])?.get(0))
    }

    pub(in crate::store) fn sender_rules(&self) -> anyhow::Result<(i64, Vec<SenderRule>)> {
        let mut conn = self.conn()?;
        let mut tx = conn.build_transaction().read_only(true).start()?;
        let generation = tx.query_one("SELECT generation FROM sender_rules_generation", &[])?.get(0);
        let rules = tx
            .query("SELECT rule, list, added_at FROM sender_rules ORDER BY list, rule", &[])?
            .iter()
            .map(|r| SenderRule { rule: r.get(0), allow: r.get::<_, &str>(1) == "allow", added_at: r.get(2) })
            .collect();
        tx.commit()?;
        Ok((generation, rules))
    }

    pub(in crate::store) fn set_sender_rule(&self, rule: &str, allow: bool) -> anyhow::Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        // The generation row is the rules' lock: two gateways' edits apply one after the other.
        tx.execute("SELECT generation FROM sender_rules_generation FOR UPDATE", &[])?;
        let was = tx.query_opt("SELECT list FROM sender_rules WHERE rule = $1", &[&rule])?;
        if was.is_some_and(|r| r.get::<_, &str>(0) == list(allow)) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO sender_rules (rule, list, added_at) VALUES ($1, $2, $3)
             ON CONFLICT (rule) DO UPDATE SET list = excluded.list, added_at = excluded.added_at",
            &[&rule, &list(allow), &now_ms()],
        )?;
        tx.execute("UPDATE sender_rules_generation SET generation = generation + 1", &[])?;
        tx.commit()?;
        Ok(true)
    }

    pub(in crate::store) fn remove_sender_rule(&self, rule: &str) -> anyhow::Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction()?;
        tx.execute("SELECT generation FROM sender_rules_generation FOR UPDATE", &[])?;
        if tx.execute("DELETE FROM sender_rules WHERE rule = $1", &[&rule])? == 0 {
            return Ok(false);
        }
        tx.execute("UPDATE sender_rules_generation SET generation = generation + 1", &[])?;
        tx.commit()?;
        Ok(true)
    }
}
