//! The per-core pipeline. OWNER: pipeline helper.
