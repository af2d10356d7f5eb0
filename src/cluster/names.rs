//! Kubernetes strings canaryd writes or reads, gathered in one place: API
//! groups, field manager, labels and annotations, condition types and reasons.
//! Everything else in cluster mode uses enums; these are the serialized edge.

/// The field manager of every write canaryd makes (server-side apply and patches).
pub const FIELD_MANAGER: &str = "canaryd";

/// The API group of the `Rollout` custom resource.
pub const GROUP: &str = "canaryd.dev";

/// Suffix of the Deployment canaryd keeps as the stable track (`checkout-primary`).
pub const PRIMARY_SUFFIX: &str = "-primary";

/// Annotation on the primary: the template hash it was last promoted from.
pub const PROMOTED_HASH: &str = "canaryd.dev/promoted-template-hash";

/// Label on Deployments canaryd created.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The label on a pod template naming the version its pods run.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

/// Condition types of a Rollout's status.
pub mod condition {
    /// A rollout is in flight (True) or not (False).
    pub const PROGRESSING: &str = "Progressing";
    /// The rollout is paused, by hand or waiting for data.
    pub const PAUSED: &str = "Paused";
    /// The last canary was promoted.
    pub const PROMOTED: &str = "Promoted";
    /// The last canary was rolled back (or aborted).
    pub const ROLLED_BACK: &str = "RolledBack";
    /// The spec does not validate; the last valid one keeps running.
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

/// Condition reasons and event reasons.
pub mod reason {
    /// The spec failed validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The spec validates.
    pub const SPEC_VALID: &str = "SpecValid";
}

/// Event actions.
pub mod action {
    /// canaryd validated the spec.
    pub const VALIDATE: &str = "Validate";
    /// canaryd took a decision about the rollout.
    pub const DECIDE: &str = "Decide";
}

/// Event reasons of decisions, one per engine action.
pub mod decision {
    /// A canary started at its first step.
    pub const STARTED: &str = "Started";
    /// The next step began.
    pub const ADVANCED: &str = "Advanced";
    /// A step stayed where it was and counted something.
    pub const HELD: &str = "Held";
    /// The canary became the stable version.
    pub const PROMOTED: &str = "Promoted";
    /// canaryd rolled the canary back.
    pub const ROLLED_BACK: &str = "RolledBack";
    /// The rollout was paused.
    pub const PAUSED: &str = "Paused";
    /// The rollout was resumed.
    pub const RESUMED: &str = "Resumed";
    /// A person aborted the rollout.
    pub const ABORTED: &str = "Aborted";
    /// The same canary was started again.
    pub const RETRIED: &str = "Retried";
    /// A newer canary replaced the one in flight.
    pub const SUPERSEDED: &str = "Superseded";
    /// Missing data was let through (`no_data: ignore`).
    pub const NO_DATA_IGNORED: &str = "NoDataIgnored";
}
