//! Wire formats, one file per protocol. OWNER: pipeline helper.
