//! A test runtime: System + Balances + Opml.

use frame_support::{
    derive_impl, parameter_types,
    traits::{ConstU32, ConstU64, Hooks},
};
use sp_runtime::{BuildStorage, Perbill};

type Block = frame_system::mocking::MockBlock<Test>;
pub type AccountId = u64;
pub type Balance = u64;

frame_support::construct_runtime!(
    pub enum Test {
        System: frame_system,
        Balances: pallet_balances,
        Opml: pallet_opml,
    }
);

#[derive_impl(frame_system::config_preludes::TestDefaultConfig)]
impl frame_system::Config for Test {
    type Block = Block;
    type AccountData = pallet_balances::AccountData<Balance>;
}

#[derive_impl(pallet_balances::config_preludes::TestDefaultConfig)]
impl pallet_balances::Config for Test {
    type AccountStore = System;
    type Balance = Balance;
    type ExistentialDeposit = ConstU64<1>;
    type RuntimeHoldReason = RuntimeHoldReason;
}

pub const CHALLENGE_PERIOD: u64 = 20;
pub const MOVE_DEADLINE: u64 = 5;
pub const SERVER_BOND: Balance = 1_000;
pub const CHALLENGER_BOND: Balance = 500;
pub const MODEL_DEPOSIT_BASE: Balance = 100;
pub const MIN_FEE: Balance = 10;

parameter_types! {
    pub const BurnShare: Perbill = Perbill::from_percent(10);
    pub static MaxStepFuelCap: u64 = 4_000_000;
    /// 0 turns the `on_initialize` settling off (tests of the `timeout` call).
    pub static MaxSettle: u32 = 4;
}

impl pallet_opml::Config for Test {
    type RuntimeEvent = RuntimeEvent;
    type RuntimeHoldReason = RuntimeHoldReason;
    type Currency = Balances;
    type WeightInfo = ();
    #[cfg(feature = "runtime-benchmarks")]
    type BenchmarkHelper = DigitsBench;
    type ChallengePeriod = ConstU64<CHALLENGE_PERIOD>;
    type MoveDeadline = ConstU64<MOVE_DEADLINE>;
    type ModelDepositBase = ConstU64<MODEL_DEPOSIT_BASE>;
    type ModelDepositPerByte = ConstU64<0>;
    type MinTaskFee = ConstU64<MIN_FEE>;
    type ServerBond = ConstU64<SERVER_BOND>;
    type ChallengerBond = ConstU64<CHALLENGER_BOND>;
    type BurnShare = BurnShare;
    type Arity = ConstU32<4>;
    type MaxCodeLen = ConstU32<{ 64 * 1024 }>;
    type MaxInputLen = ConstU32<4096>;
    type MaxOutputLen = ConstU32<4096>;
    type MaxProofLen = ConstU32<{ 64 * 1024 }>;
    type MaxNodes = ConstU32<256>;
    type MaxStepFuel = MaxStepFuelCap;
    type MaxOpenDisputes = ConstU32<4>;
    type MaxSettlePerBlock = MaxSettle;
}

/// The benchmarks run the digits fixture (see `fixture::bench_scenario`).
#[cfg(feature = "runtime-benchmarks")]
pub struct DigitsBench;

#[cfg(feature = "runtime-benchmarks")]
impl pallet_opml::BenchmarkHelper for DigitsBench {
    fn scenario() -> pallet_opml::BenchScenario {
        crate::fixture::bench_scenario(
            <<Test as pallet_opml::Config>::Arity as frame_support::traits::Get<u32>>::get(),
        )
    }
    fn largest_proof_scenario() -> pallet_opml::BenchScenario {
        use frame_support::traits::Get;
        crate::fixture::largest_proof_scenario(
            <Test as pallet_opml::Config>::Arity::get(),
            <Test as pallet_opml::Config>::MaxProofLen::get(),
        )
    }
}

pub const OWNER: AccountId = 1;
pub const REQUESTER: AccountId = 2;
pub const SERVER: AccountId = 3;
pub const ALICE: AccountId = 4;
pub const BOB: AccountId = 5;
pub const CAROL: AccountId = 6;
pub const POOR: AccountId = 7;
pub const START: Balance = 1_000_000;

/// Genesis: every named account but `POOR` has `START`; `POOR` has 5.
pub fn new_test_ext() -> sp_io::TestExternalities {
    let mut t = frame_system::GenesisConfig::<Test>::default()
        .build_storage()
        .expect("genesis builds");
    pallet_balances::GenesisConfig::<Test> {
        balances: [OWNER, REQUESTER, SERVER, ALICE, BOB, CAROL]
            .iter()
            .map(|a| (*a, START))
            .chain([(POOR, 5)])
            .collect(),
        ..Default::default()
    }
    .assimilate_storage(&mut t)
    .expect("balances genesis");
    let mut ext = sp_io::TestExternalities::new(t);
    ext.execute_with(|| System::set_block_number(1));
    ext
}

/// Closes the current block and opens the next, running the hooks.
pub fn next_block() {
    let n = System::block_number();
    Opml::on_finalize(n);
    System::on_finalize(n);
    System::set_block_number(n + 1);
    System::on_initialize(n + 1);
    Opml::on_initialize(n + 1);
}

/// Advances to block `n`.
pub fn run_to_block(n: u64) {
    while System::block_number() < n {
        next_block();
    }
}

/// Total issuance at genesis.
pub fn genesis_issuance() -> Balance {
    6 * START + 5
}
