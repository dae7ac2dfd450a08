//! `pallet-opml`: work in progress (issue 5). This commit only brings in the
//! FRAME dependencies at the frame-support 49 family.
#![cfg_attr(not(feature = "std"), no_std)]
pub use pallet::*;

#[frame_support::pallet]
pub mod pallet {
    #[pallet::pallet]
    pub struct Pallet<T>(_);
    #[pallet::config]
    pub trait Config: frame_system::Config {}
}
