//! Outside input parsed into types at the edge, so that the rest of the code cannot misuse it.

mod ids;

pub use ids::{InvalidId, PageId, SenderId};
