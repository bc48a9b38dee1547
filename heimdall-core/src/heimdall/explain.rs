//! Explaining a decision: why would (subject, method, path) be allowed or denied?

use serde_json::json;

use super::Heimdall;
use crate::authz::Operation;
use crate::error::{Error, Result};
use crate::mapping::{MAX_PATH_LEN, MappingRule, PathRejection, check_path};
use crate::model::{
    ActionName, Caller, DecidedBy, ExplainCandidate, ExplainDecision, ExplainRequest, Explanation, PathCheck,
    PatternKind, RoleGrant, RoleName, RoleSource, Subject,
};
use crate::pdp::Decision;
use crate::pdp::pack::{self, action};

/// Longest request target (path and query string) an explanation accepts, in bytes.
const MAX_EXPLAIN_TARGET_LEN: usize = 4 * MAX_PATH_LEN;
/// Longest request method an explanation accepts, in bytes.
const MAX_METHOD_LEN: usize = 32;

/// Checks a request method: an HTTP token (RFC 9110), at most [`MAX_METHOD_LEN`] bytes. Its case is kept:
/// the resolver matches methods case-sensitively, as adapters do.
fn check_method(method: &str) -> Result<()> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.bytes().all(token) {
        return Err(Error::invalid(format!(
            "method must be an HTTP method token of 1 to {MAX_METHOD_LEN} bytes, such as GET"
        )));
    }
    Ok(())
}

/// The path of a request target as received: everything before its query string or fragment.
fn without_query(target: &str) -> &str {
    target.find(['?', '#']).map_or(target, |i| &target[..i])
}

fn candidate(rule: &MappingRule) -> ExplainCandidate {
    ExplainCandidate {
        mapping_id: rule.id,
        method: rule.method.as_str().to_owned(),
        path_pattern: rule.pattern.as_str().to_owned(),
        action: rule.action.as_str().to_owned(),
        owner_group: rule.owner_group.as_ref().map(|g| g.as_str().to_owned()),
        priority: rule.priority,
        kind: if rule.pattern.is_regex() {
            PatternKind::Regex
        } else {
            PatternKind::Route
        },
    }
}

fn names(roles: &[&RoleName]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

impl Heimdall {
    /// Explains why `subject` would be allowed or denied `method path`, as an adapter would decide it: the
    /// canonical-path check, every mapping that matches (in the resolver's precedence order; the first
    /// decides), the action, the subject's roles and where each comes from, and the decision.
    ///
    /// - **Decision.** With a PDP that holds the pushed principal policies (a Cerbos,
    ///   [`crate::pdp::Pdp::holds_principal_policies`]), it is asked exactly as an adapter asks: the subject's
    ///   principal id with the role `user` alone, the action on a resource of the action's kind. Otherwise
    ///   Heimdall decides from the database: the role permissions of the subject's roles for the action, a
    ///   deny beating any allow, no permission meaning no. When Cerbos and the database disagree (a push
    ///   pending), the reason says so. When Cerbos cannot be reached while deciding, the decision is `deny`
    ///   (what adapters do: no decision means no) with that reason, rather than an error, so that the rest of
    ///   the explanation still helps.
    /// - **Subjects.** An unknown subject (never seen, never named) is not an error: `known_user` is false,
    ///   it holds no roles, and the decision is asked for all the same (a deny). Roles from tokens
    ///   ([`crate::Config::merge_token_roles`]) are not known here and not counted, as adapters' principal
    ///   policies do not count them either.
    /// - **Who may ask.** Superadmins, for any path; a manager, for a path inside the path scope of one of
    ///   his management rights (the pack's `mapping:explain` on `heimdall_mapping`, with the path as
    ///   `requestPath`). A refusal, like any failure, is audited; an explanation given is not (reads are not).
    /// - Invalid input (a bad subject, a method that is no HTTP token, a target longer than
    ///   `4 × MAX_PATH_LEN`) is [`crate::ErrorKind::InvalidInput`]. A path that is not canonical is not an
    ///   error: its explanation says `rejected_path`.
    pub async fn explain(&self, caller: &Caller, request: &ExplainRequest) -> Result<Explanation> {
        let audit_request = json!({"subject": request.subject, "method": request.method, "path": request.path});
        // What the caller must be allowed to explain: the path as received, up to its query string. For a
        // canonical path that is the path the resolver matches. A non-canonical path ("/go/../admin") may
        // start with a manager's prefix without lying in his scope; that is harmless: the resolver matches no
        // non-canonical path, so its explanation holds only the rejection (and the subject's roles, which a
        // manager may read anyway), never another path's mappings, and it grants nothing.
        let path_attr = without_query(&request.path);
        let target = pack::explain(path_attr);
        self.audited_read(caller, "explain", audit_request, &target, || async {
            if request.path.len() > MAX_EXPLAIN_TARGET_LEN {
                return Err(Error::invalid(format!(
                    "path must be at most {MAX_EXPLAIN_TARGET_LEN} bytes long"
                )));
            }
            check_method(&request.method)?;
            let subject = Subject::parse(request.subject.as_str())?;
            self.authorize_caller(caller, Operation::new(action::MAPPING_EXPLAIN, target.clone()))
                .await?;
            self.explanation(request, &subject).await
        })
        .await
    }

    async fn explanation(&self, request: &ExplainRequest, subject: &Subject) -> Result<Explanation> {
        let method = request.method.as_str();
        // The freshest snapshot the database gives; the current one when it cannot be reached.
        let snapshot = match self.refresh_mappings().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "explain: could not refresh the mapping snapshot; using the current one");
                self.mapping_snapshot()
            }
        };
        let (roles, known_user) = match self.store().user_id(subject).await? {
            Some(id) => (self.store().role_sources(id).await?, true),
            None => (Vec::new(), false),
        };
        let grants: Vec<RoleGrant> = roles
            .iter()
            .map(|(role, group)| RoleGrant {
                role: role.as_str().to_owned(),
                source: if group.is_some() {
                    RoleSource::Group
                } else {
                    RoleSource::Direct
                },
                group: group.as_ref().map(|g| g.as_str().to_owned()),
            })
            .collect();
        let mut explanation = Explanation {
            subject: subject.as_str().to_owned(),
            method: method.to_owned(),
            path: PathCheck::Ok {
                path: without_query(&request.path).to_owned(),
            },
            mapping_version: snapshot.version(),
            candidates: Vec::new(),
            winner: None,
            action: None,
            known_user,
            roles: grants,
            decision: ExplainDecision::NoMapping,
            decided_by: None,
            reason: String::new(),
        };
        let candidates = match snapshot.candidates(method, &request.path) {
            Ok(c) => c,
            Err(why) => {
                // A refused method leaves the path's own check to be reported as it is.
                let path_why = match check_path(&request.path) {
                    Err(path_why) => Some(path_why),
                    Ok(_) if why != PathRejection::InvalidMethod => Some(why),
                    Ok(_) => None,
                };
                if let Some(path_why) = path_why {
                    explanation.path = PathCheck::Rejected {
                        reason: path_why.as_str().to_owned(),
                    };
                }
                explanation.decision = ExplainDecision::RejectedPath;
                explanation.reason = if why == PathRejection::InvalidMethod {
                    format!(
                        "the method is not an upper-case token ({why}): it is refused before any mapping or policy is consulted"
                    )
                } else {
                    format!(
                        "the path is not canonical ({why}): it is refused before any mapping or policy is consulted"
                    )
                };
                return Ok(explanation);
            }
        };
        if let Ok(path) = check_path(&request.path) {
            explanation.path = PathCheck::Ok { path: path.to_owned() };
        }
        explanation.candidates = candidates.iter().map(|r| candidate(r)).collect();
        let Some(winner) = candidates.first() else {
            explanation.reason = format!("no mapping matches {method} on this path: unmapped requests are denied");
            return Ok(explanation);
        };
        explanation.winner = Some(winner.id);
        explanation.action = Some(winner.action.as_str().to_owned());

        let mut held: Vec<&RoleName> = roles.iter().map(|(role, _)| role).collect();
        held.dedup();
        let (by_database, database_reason) = self.decide_from_roles(subject, &held, &winner.action).await?;
        if !self.inner.pdp.holds_principal_policies() {
            explanation.decision = decision(by_database);
            explanation.decided_by = Some(DecidedBy::Builtin);
            explanation.reason = database_reason;
            return Ok(explanation);
        }
        explanation.decided_by = Some(DecidedBy::Cerbos);
        // Exactly what an adapter asks in principal-policy mode: the principal policy pushed for the subject
        // decides, and the role `user` alone gains nothing from any other policy.
        match crate::authorizer::adapter_check(self.inner.pdp.as_ref(), subject, winner).await {
            Ok(by_cerbos) => {
                explanation.decision = decision(by_cerbos);
                explanation.reason = format!(
                    "Cerbos {} {} for {subject} (the principal policy pushed for them)",
                    verb(by_cerbos),
                    winner.action
                );
                if by_cerbos != by_database {
                    explanation.reason.push_str(&format!(
                        "; the database would {} it ({database_reason}): a push may be pending",
                        if by_database.is_allowed() { "allow" } else { "deny" }
                    ));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "explain: Cerbos could not decide; explaining a denial");
                explanation.decision = ExplainDecision::Deny;
                explanation.reason = format!(
                    "Cerbos could not decide ({}): adapters deny when the PDP cannot decide",
                    e.kind()
                );
            }
        }
        Ok(explanation)
    }

    /// What the subject's roles in the database say about `action`: a deny beats any allow, and no
    /// permission means no (as the pushed principal policy says).
    async fn decide_from_roles(
        &self,
        subject: &Subject,
        roles: &[&RoleName],
        action: &ActionName,
    ) -> Result<(Decision, String)> {
        let (mut allowing, mut denying) = (Vec::new(), Vec::new());
        for role in roles {
            let permissions = match self.store().role_permissions(role).await {
                Ok(p) => p,
                // Deleted since its holders were read: it grants nothing.
                Err(e) if e.kind() == crate::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for p in permissions.iter().filter(|p| p.action == *action) {
                match p.effect {
                    crate::model::Effect::Allow => allowing.push(*role),
                    crate::model::Effect::Deny => denying.push(*role),
                }
            }
        }
        Ok(if !denying.is_empty() {
            (
                Decision::Deny,
                format!("denied by role {} (a deny beats any allow)", names(&denying)),
            )
        } else if !allowing.is_empty() {
            (Decision::Allow, format!("allowed by role {}", names(&allowing)))
        } else {
            (
                Decision::Deny,
                format!("no role of {subject} grants {action}: denied by default"),
            )
        })
    }
}

fn decision(d: Decision) -> ExplainDecision {
    if d.is_allowed() {
        ExplainDecision::Allow
    } else {
        ExplainDecision::Deny
    }
}

fn verb(d: Decision) -> &'static str {
    if d.is_allowed() { "allows" } else { "denies" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_tokens_and_queries_are_cut() {
        // Any token is valid input; one that is not in upper case (`get`) is explained as refused.
        for ok in ["GET", "get", "PROPFIND", "M-SEARCH"] {
            assert!(check_method(ok).is_ok(), "{ok}");
        }
        for bad in ["", "GE T", "GET\n", &"A".repeat(33)] {
            assert!(check_method(bad).is_err(), "{bad:?}");
        }
        assert_eq!(without_query("/a/b?x=/c"), "/a/b");
        assert_eq!(without_query("/a#f"), "/a");
        assert_eq!(without_query("/a"), "/a");
    }
}
