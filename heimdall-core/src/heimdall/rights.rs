//! Group-management rights: who may manage which groups, and where their mappings may lie.

use serde_json::json;

use super::{Heimdall, raw_target};
use crate::authz::Operation;
use crate::error::{Error, Result};
use crate::model::{Caller, GroupName, GroupPattern, ManagementRight, PathScope, Subject};
use crate::pdp::pack::{self, action};

impl Heimdall {
    /// Lets members of `manager_group` manage the groups matching `target_pattern` (an SQL `LIKE` pattern,
    /// see [`GroupPattern`]) and, with a `path_scope` (such as `/go/**`, see [`PathScope`]), the route
    /// mappings those groups own inside it. Without a scope the right covers no mappings. Superadmins only
    /// (the pack's `management_right:create`).
    pub async fn create_management_right(
        &self,
        caller: &Caller,
        manager_group: &str,
        target_pattern: &str,
        path_scope: Option<&str>,
    ) -> Result<ManagementRight> {
        let request =
            json!({"manager_group": manager_group, "target_pattern": target_pattern, "path_scope": path_scope});
        let target = raw_target("management_right", format_args!("{manager_group}:{target_pattern}"));
        self.mutate(
            caller,
            "create_management_right",
            request,
            &target,
            move |attempt| async move {
                let manager = GroupName::parse(manager_group)?;
                let pattern = GroupPattern::parse(target_pattern)?;
                let scope = path_scope.map(PathScope::parse).transpose()?;
                let op = Operation::new(
                    action::MANAGEMENT_RIGHT_CREATE,
                    pack::management_right(&manager, &pattern),
                );
                let w = attempt.authorize(vec![op], None).await?;
                self.store().create_right(&w, &manager, &pattern, scope.as_ref()).await
            },
        )
        .await
    }

    /// Management rights, optionally only those of one manager group.
    pub async fn list_management_rights(&self, manager_group: Option<&str>) -> Result<Vec<ManagementRight>> {
        let manager = manager_group.map(GroupName::parse).transpose()?;
        self.store().list_rights(manager.as_ref()).await
    }

    /// Deletes a management right.
    pub async fn delete_management_right(&self, caller: &Caller, id: i64) -> Result<()> {
        let target = raw_target("management_right", id);
        self.mutate(
            caller,
            "delete_management_right",
            json!({"id": id}),
            &target,
            move |attempt| async move {
                let right = self.store().get_right(id).await?;
                let op = Operation::new(
                    action::MANAGEMENT_RIGHT_DELETE,
                    pack::management_right(&right.manager_group, &right.target_pattern),
                );
                let w = attempt.authorize(vec![op], None).await?;
                self.store().delete_right(&w, id).await
            },
        )
        .await
    }

    /// The groups `subject` may manage through the management rights of the groups they belong to.
    pub async fn manageable_groups(&self, subject: &str) -> Result<Vec<GroupName>> {
        let subject = Subject::parse(subject)?;
        let Some(user_id) = self.store().user_id(&subject).await? else {
            return Err(Error::not_found(format!("user {subject} does not exist")));
        };
        let rights = self.store().management_rights_of(user_id).await?;
        if rights.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.store().all_group_names().await?;
        Ok(groups
            .into_iter()
            .filter(|g| rights.iter().any(|(p, _)| p.matches(g)))
            .collect())
    }
}
