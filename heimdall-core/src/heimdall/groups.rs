//! Groups and memberships.

use serde_json::json;

use super::{Heimdall, description, raw_target};
use crate::authz::Operation;
use crate::error::Result;
use crate::model::{Caller, Group, GroupName, MembershipChange, Page, RoleName, Subject, page_size};
use crate::pdp::Resource;
use crate::pdp::pack::{self, action};
use crate::store::{GroupFacts, Guard};

impl Heimdall {
    /// Creates a group.
    pub async fn create_group(&self, caller: &Caller, name: &str, description_: Option<&str>) -> Result<Group> {
        let request = json!({"name": name, "description": description_});
        self.mutate(
            caller,
            "create_group",
            request,
            &raw_target("group", name),
            move |attempt| async move {
                let name = GroupName::parse(name)?;
                let desc = description(description_)?;
                let op = Operation::new(action::GROUP_CREATE, pack::new_group(&name));
                let w = attempt.authorize(vec![op], None).await?;
                self.store().create_group(&w, &name, desc).await
            },
        )
        .await
    }

    /// One group.
    pub async fn get_group(&self, name: &str) -> Result<Group> {
        self.store().get_group(&GroupName::parse(name)?).await
    }

    /// Groups in name order, optionally only those whose name starts with `prefix`; `after` is the last
    /// name of the previous page.
    pub async fn list_groups(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<Group>> {
        crate::model::check_text("prefix", prefix)?;
        crate::model::check_text("after", after)?;
        let limit = page_size(limit)?;
        let items = self.store().list_groups(prefix, after, limit).await?;
        Ok(Page::new(items, limit, |g| g.name.to_string()))
    }

    /// Deletes a group with its memberships, role assignments and management rights, in one transaction.
    /// A group that owns mappings is not deleted (conflict): reassign or delete the mappings first.
    pub async fn delete_group(&self, caller: &Caller, name: &str) -> Result<()> {
        let request = json!({"name": name});
        self.mutate(
            caller,
            "delete_group",
            request,
            &raw_target("group", name),
            move |attempt| async move {
                let name = GroupName::parse(name)?;
                let (resource, guard) = self.group_as_decided(&name).await?;
                let w = attempt
                    .authorize(vec![Operation::new(action::GROUP_DELETE, resource)], Some(guard))
                    .await?;
                self.store().delete_group(&w, &name).await
            },
        )
        .await
    }

    /// Members of a group, by subject; `after` is the last subject of the previous page.
    pub async fn group_members(&self, group: &str, after: Option<&str>, limit: Option<u32>) -> Result<Page<Subject>> {
        crate::model::check_text("after", after)?;
        let limit = page_size(limit)?;
        let items = self
            .store()
            .group_members(&GroupName::parse(group)?, after, limit)
            .await?;
        Ok(Page::new(items, limit, |s| s.to_string()))
    }

    /// Roles a group gives its members.
    pub async fn group_roles(&self, group: &str) -> Result<Vec<RoleName>> {
        self.store().group_roles(&GroupName::parse(group)?).await
    }

    /// Adds `subject` to `group` (creating the user row for a subject not seen yet). Idempotent: a second add
    /// reports [`MembershipChange::AlreadyMember`].
    ///
    /// A manager may add members only to a group that holds no management right, not the superadmin role,
    /// and only roles matching his own management patterns: nobody gains rights he could not grant.
    pub async fn add_member(&self, caller: &Caller, group: &str, subject: &str) -> Result<MembershipChange> {
        let request = json!({"group": group, "subject": subject});
        self.mutate(
            caller,
            "add_member",
            request,
            &raw_target("group", group),
            move |attempt| async move {
                let group = GroupName::parse(group)?;
                let subject = Subject::parse(subject)?;
                let (resource, guard) = self.group_as_decided(&group).await?;
                let w = attempt
                    .authorize(vec![Operation::new(action::GROUP_ADD_MEMBER, resource)], Some(guard))
                    .await?;
                self.store().add_member(&w, &group, &subject).await
            },
        )
        .await
    }

    /// Removes `subject` from `group`; not found when they are not a member. Authorized like
    /// [`Heimdall::add_member`].
    pub async fn remove_member(&self, caller: &Caller, group: &str, subject: &str) -> Result<()> {
        let request = json!({"group": group, "subject": subject});
        self.mutate(
            caller,
            "remove_member",
            request,
            &raw_target("group", group),
            move |attempt| async move {
                let group = GroupName::parse(group)?;
                let subject = Subject::parse(subject)?;
                let (resource, guard) = self.group_as_decided(&group).await?;
                let w = attempt
                    .authorize(vec![Operation::new(action::GROUP_REMOVE_MEMBER, resource)], Some(guard))
                    .await?;
                self.store().remove_member(&w, &group, &subject).await
            },
        )
        .await
    }

    /// The group as the PDP sees it (its rights and roles), and the guard that makes the write transaction
    /// check those facts again under its lock.
    async fn group_as_decided(&self, name: &GroupName) -> Result<(Resource, Guard)> {
        let facts: GroupFacts = self.store().group_facts(name).await?;
        let privileged = facts.roles.iter().any(|r| self.is_superadmin_role(r));
        let resource = pack::group(name, facts.holds_rights, &facts.roles, privileged);
        Ok((resource, Guard::Group(name.clone(), facts)))
    }
}
