//! Roles, what groups and users hold them, and what they permit.

use serde_json::json;

use super::{Heimdall, action_kind, description, raw_target};
use crate::authz::Operation;
use crate::error::{Error, Result};
use crate::model::{ActionName, Caller, Effect, GroupName, Page, Role, RoleName, RolePermission, Subject, page_size};
use crate::pdp::pack::{self, action};

impl Heimdall {
    /// Creates a role.
    pub async fn create_role(&self, caller: &Caller, name: &str, description_: Option<&str>) -> Result<Role> {
        let request = json!({"name": name, "description": description_});
        self.mutate(
            caller,
            "create_role",
            request,
            &raw_target("role", name),
            move |attempt| async move {
                let name = RoleName::parse(name)?;
                if name.as_str() == pack::SUPERADMIN_ROLE {
                    return Err(Error::invalid(format!("role name {name} is reserved for Heimdall")));
                }
                let desc = description(description_)?;
                let w = attempt
                    .authorize(vec![Operation::new(action::ROLE_CREATE, pack::role(&name))], None)
                    .await?;
                self.store().create_role(&w, &name, desc).await
            },
        )
        .await
    }

    /// Roles in name order; `after` is the last name of the previous page.
    pub async fn list_roles(&self, after: Option<&str>, limit: Option<u32>) -> Result<Page<Role>> {
        crate::model::check_text("after", after)?;
        let limit = page_size(limit)?;
        let items = self.store().list_roles(after, limit).await?;
        Ok(Page::new(items, limit, |r| r.name.to_string()))
    }

    /// Deletes a role, with its assignments and permissions.
    pub async fn delete_role(&self, caller: &Caller, name: &str) -> Result<()> {
        let request = json!({"name": name});
        self.mutate(
            caller,
            "delete_role",
            request,
            &raw_target("role", name),
            move |attempt| async move {
                let name = RoleName::parse(name)?;
                let w = attempt
                    .authorize(vec![Operation::new(action::ROLE_DELETE, pack::role(&name))], None)
                    .await?;
                self.store().delete_role(&w, &name).await
            },
        )
        .await
    }

    /// Gives `group`'s members `role`. Returns false when the group had it already.
    pub async fn assign_group_role(&self, caller: &Caller, group: &str, role: &str) -> Result<bool> {
        let request = json!({"group": group, "role": role});
        self.mutate(
            caller,
            "assign_group_role",
            request,
            &raw_target("group", group),
            move |attempt| async move {
                let group = GroupName::parse(group)?;
                let role = RoleName::parse(role)?;
                let resource = pack::group_role(&group, &role, self.is_superadmin_role(&role));
                let w = attempt
                    .authorize(vec![Operation::new(action::GROUP_ASSIGN_ROLE, resource)], None)
                    .await?;
                self.store().assign_group_role(&w, &group, &role).await
            },
        )
        .await
    }

    /// Takes `role` away from `group`.
    pub async fn remove_group_role(&self, caller: &Caller, group: &str, role: &str) -> Result<()> {
        let request = json!({"group": group, "role": role});
        self.mutate(
            caller,
            "remove_group_role",
            request,
            &raw_target("group", group),
            move |attempt| async move {
                let group = GroupName::parse(group)?;
                let role = RoleName::parse(role)?;
                let resource = pack::group_role(&group, &role, self.is_superadmin_role(&role));
                let w = attempt
                    .authorize(vec![Operation::new(action::GROUP_REMOVE_ROLE, resource)], None)
                    .await?;
                self.store().remove_group_role(&w, &group, &role).await
            },
        )
        .await
    }

    /// Gives `subject` `role` directly. Returns false when they had it already. Only superadmins may (the
    /// pack's `user:assign_role`): a direct role is not bounded by any management pattern.
    pub async fn assign_user_role(&self, caller: &Caller, subject: &str, role: &str) -> Result<bool> {
        let request = json!({"subject": subject, "role": role});
        self.mutate(
            caller,
            "assign_user_role",
            request,
            &raw_target("user", subject),
            move |attempt| async move {
                let subject = Subject::parse(subject)?;
                let role = RoleName::parse(role)?;
                let w = attempt
                    .authorize(
                        vec![Operation::new(action::USER_ASSIGN_ROLE, pack::user(&subject))],
                        None,
                    )
                    .await?;
                self.store().assign_user_role(&w, &subject, &role).await
            },
        )
        .await
    }

    /// Takes a directly given `role` away from `subject` (authorized as `user:assign_role`).
    pub async fn remove_user_role(&self, caller: &Caller, subject: &str, role: &str) -> Result<()> {
        let request = json!({"subject": subject, "role": role});
        self.mutate(
            caller,
            "remove_user_role",
            request,
            &raw_target("user", subject),
            move |attempt| async move {
                let subject = Subject::parse(subject)?;
                let role = RoleName::parse(role)?;
                let w = attempt
                    .authorize(
                        vec![Operation::new(action::USER_ASSIGN_ROLE, pack::user(&subject))],
                        None,
                    )
                    .await?;
                self.store().remove_user_role(&w, &subject, &role).await
            },
        )
        .await
    }

    /// Lets (`allow`) or forbids (`deny`) `role`'s holders `action`. The action's resource kind is the part of
    /// its name before the last `:` (see [`crate::pdp::resource_kind_for_action`]).
    pub async fn grant_permission(&self, caller: &Caller, role: &str, action: &str, effect: &str) -> Result<()> {
        let request = json!({"role": role, "action": action, "effect": effect});
        self.mutate(
            caller,
            "grant_permission",
            request,
            &raw_target("role", role),
            move |attempt| async move {
                let role = RoleName::parse(role)?;
                let action = ActionName::parse(action)?;
                let effect = Effect::parse(effect)?;
                let kind = action_kind(&action)?;
                let op = Operation::new(action::ROLE_GRANT_PERMISSION, pack::role(&role));
                let w = attempt.authorize(vec![op], None).await?;
                self.store().grant_permission(&w, &role, &action, &kind, effect).await
            },
        )
        .await
    }

    /// Removes `role`'s permission for `action` (authorized as `role:grant_permission`).
    pub async fn revoke_permission(&self, caller: &Caller, role: &str, action: &str) -> Result<()> {
        let request = json!({"role": role, "action": action});
        self.mutate(
            caller,
            "revoke_permission",
            request,
            &raw_target("role", role),
            move |attempt| async move {
                let role = RoleName::parse(role)?;
                let action = ActionName::parse(action)?;
                let op = Operation::new(action::ROLE_GRANT_PERMISSION, pack::role(&role));
                let w = attempt.authorize(vec![op], None).await?;
                self.store().revoke_permission(&w, &role, &action).await
            },
        )
        .await
    }

    /// What `role` lets its holders do.
    pub async fn role_permissions(&self, role: &str) -> Result<Vec<RolePermission>> {
        self.store().role_permissions(&RoleName::parse(role)?).await
    }
}
