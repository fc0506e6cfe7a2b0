//! Consumer-group coordination: which member owns which partition, and the committed
//! offsets. The state lives in the metadata store, so any agent serves any group.

pub mod assignor;
pub mod classic;
pub mod coordinator;
