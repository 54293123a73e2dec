//! Member ids handed out by the coordinator: `<client or instance id>-<uuid>`, as
//! Kafka forms them, so that logs and admin tools show whose member it is.

/// A fresh member id for a member of `client_id` (or of a static `instance_id`).
pub(crate) fn new_member_id(client_id: &str, instance_id: Option<&str>) -> String {
    let prefix = instance_id.unwrap_or(client_id);
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}
