//! 200 trivial tests as `#[sandbox_test]` and the same 200 as plain `#[test]`: the per-test overhead
//! benchmark (`cargo xtask bench overhead`). Ignored in normal runs.

macro_rules! ten {
    ($attr:meta) => {
        #[$attr]
        #[ignore = "benchmark"]
        fn t0() {
            std::hint::black_box(0);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t1() {
            std::hint::black_box(1);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t2() {
            std::hint::black_box(2);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t3() {
            std::hint::black_box(3);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t4() {
            std::hint::black_box(4);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t5() {
            std::hint::black_box(5);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t6() {
            std::hint::black_box(6);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t7() {
            std::hint::black_box(7);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t8() {
            std::hint::black_box(8);
        }
        #[$attr]
        #[ignore = "benchmark"]
        fn t9() {
            std::hint::black_box(9);
        }
    };
}

macro_rules! two_hundred {
    ($attr:meta) => {
        mod m00 {
            ten!($attr);
        }
        mod m01 {
            ten!($attr);
        }
        mod m02 {
            ten!($attr);
        }
        mod m03 {
            ten!($attr);
        }
        mod m04 {
            ten!($attr);
        }
        mod m05 {
            ten!($attr);
        }
        mod m06 {
            ten!($attr);
        }
        mod m07 {
            ten!($attr);
        }
        mod m08 {
            ten!($attr);
        }
        mod m09 {
            ten!($attr);
        }
        mod m10 {
            ten!($attr);
        }
        mod m11 {
            ten!($attr);
        }
        mod m12 {
            ten!($attr);
        }
        mod m13 {
            ten!($attr);
        }
        mod m14 {
            ten!($attr);
        }
        mod m15 {
            ten!($attr);
        }
        mod m16 {
            ten!($attr);
        }
        mod m17 {
            ten!($attr);
        }
        mod m18 {
            ten!($attr);
        }
        mod m19 {
            ten!($attr);
        }
    };
}

mod plain {
    two_hundred!(test);
}

mod sandboxed {
    two_hundred!(sandbox::sandbox_test);
}
