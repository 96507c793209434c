//! Byte moving and wire formats at the edge. (Being written; see issue 2.)
