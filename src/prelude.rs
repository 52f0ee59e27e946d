//! The names most embedders need, in one `use kargo::prelude::*;`.

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::controller::{
    Controller, ControllerError, PromotionReport, ReconcileReport, RefreshOutcome,
};
pub use crate::schedule::{Schedule, ScheduleOptions};
pub use crate::service::{Service, ServiceHandle, ServiceOptions};
pub use kargo_core::freight::{Freight, FreightCollection, FreightId, FreightOrigin};
pub use kargo_core::loader::ManifestSet;
pub use kargo_core::pipeline::{FileStore, MemoryStore, ProjectState, StateStore};
pub use kargo_core::runner::Runner;
pub use kargo_core::source::{Discovery, DiscoveryContext, Source, SourceError, SourceRegistry};
pub use kargo_core::step::{Step, StepContext, StepError, StepOutcome, StepRegistry};
