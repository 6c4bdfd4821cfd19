pub mod cubic;
pub mod new_reno;
