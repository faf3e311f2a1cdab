//! The simulation held to the real stack: `make bench`'s accuracy run
//! (tools/bench/src/accuracy.rs, the spread deferral) and the scenario that
//! mirrors it (`scenarios/bench-accuracy.toml`) must agree on curve
//! violations (equal), SQS receives per delivered message (within 10 % of
//! the bench's) and the share of the budget used (within 2 points), each
//! measured the way the bench measures it.

use crate::check::ScenarioReport;
use serde::Serialize;
use serde_json::Value;

/// The scenario that mirrors the bench's accuracy run.
pub const SCENARIO: &str = "bench-accuracy";
/// Receives per delivered: the most the simulation may differ, relative.
pub const RECEIVES_TOLERANCE: f64 = 0.10;
/// Budget used: the most the simulation may differ, in points (0.02 = 2 %).
pub const BUDGET_TOLERANCE: f64 = 0.02;

/// The figures compared, from either side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    pub violations: u64,
    pub receives_per_delivered: f64,
    pub budget_used: f64,
}

/// One compared figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub figure: &'static str,
    pub simulation: f64,
    pub bench: f64,
    pub tolerance: &'static str,
    pub agrees: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub rows: Vec<Row>,
    pub agrees: bool,
}

/// `accuracy.{violations, budget_used, receives_per_delivered}` of a
/// `target/bench/report.json`.
pub fn from_bench_report(report: &Value) -> anyhow::Result<Figures> {
    let a = &report["accuracy"];
    let num = |k: &str| {
        a[k].as_f64()
            .ok_or_else(|| anyhow::anyhow!("the bench report has no accuracy.{k}"))
    };
    let violations = a["violations"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("the bench report has no accuracy.violations"))?;
    Ok(Figures {
        violations,
        receives_per_delivered: num("receives_per_delivered")?,
        budget_used: num("budget_used")?,
    })
}

/// The same figures from a simulated run, measured as the bench does.
pub fn from_sim(r: &ScenarioReport) -> anyhow::Result<Figures> {
    Ok(Figures {
        violations: r.violations,
        receives_per_delivered: r
            .detail
            .receives_per_delivered
            .ok_or_else(|| anyhow::anyhow!("{}: nothing was delivered", r.name))?,
        budget_used: r
            .detail
            .budget_used_sent_over_curve
            .ok_or_else(|| anyhow::anyhow!("{}: no account sent more than its burst", r.name))?,
    })
}

pub fn compare(sim: &Figures, bench: &Figures) -> Comparison {
    let rows = vec![
        Row {
            figure: "curve violations",
            simulation: sim.violations as f64,
            bench: bench.violations as f64,
            tolerance: "equal",
            agrees: sim.violations == bench.violations,
        },
        Row {
            figure: "SQS receives per delivered message",
            simulation: sim.receives_per_delivered,
            bench: bench.receives_per_delivered,
            tolerance: "±10 % of the bench's",
            agrees: (sim.receives_per_delivered - bench.receives_per_delivered).abs()
                <= RECEIVES_TOLERANCE * bench.receives_per_delivered + 1e-9,
        },
        Row {
            figure: "share of the budget used (backlogged accounts)",
            simulation: sim.budget_used,
            bench: bench.budget_used,
            tolerance: "±2 points",
            agrees: (sim.budget_used - bench.budget_used).abs() <= BUDGET_TOLERANCE + 1e-9,
        },
    ];
    let agrees = rows.iter().all(|r| r.agrees);
    Comparison { rows, agrees }
}

/// The comparison as a markdown table.
pub fn markdown(c: &Comparison, sim: &ScenarioReport, bench_path: &str) -> String {
    let mut md = format!(
        "# Simulation vs `make bench` (accuracy run, spread deferral)\n\n\
         Scenario `{}` (seed {}, {} messages, {:.0} simulated s, {:.1} s wall) against `{bench_path}`.\n\n\
         | figure | simulation | bench | tolerance | agrees |\n| --- | --- | --- | --- | --- |\n",
        sim.name, sim.seed, sim.messages, sim.simulated_s, sim.wall_s
    );
    for r in &c.rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.figure,
            r.simulation,
            r.bench,
            r.tolerance,
            if r.agrees { "yes" } else { "**no**" }
        ));
    }
    md.push_str(&format!(
        "\n{}\n",
        if c.agrees {
            "The simulation agrees with the real stack."
        } else {
            "**The simulation and the real stack disagree.**"
        }
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(violations: u64, receives: f64, budget: f64) -> Figures {
        Figures {
            violations,
            receives_per_delivered: receives,
            budget_used: budget,
        }
    }

    #[test]
    fn each_tolerance_holds_at_its_edge_and_fails_past_it() {
        let bench = f(0, 1.0, 0.99);
        assert!(compare(&f(0, 1.1, 0.97), &bench).agrees);
        assert!(compare(&f(0, 0.9, 1.01), &bench).agrees);
        let fails = |sim: Figures| !compare(&sim, &bench).agrees;
        assert!(fails(f(1, 1.0, 0.99)), "one violation is not 0");
        assert!(fails(f(0, 1.11, 0.99)));
        assert!(fails(f(0, 0.89, 0.99)));
        assert!(fails(f(0, 1.0, 0.969)));
        assert!(fails(f(0, 1.0, 1.011)));
    }

    #[test]
    fn the_bench_figures_are_read_from_its_report() {
        let v = serde_json::json!({"accuracy": {
            "violations": 0, "budget_used": 0.999, "receives_per_delivered": 1.01,
            "naive": {"violations": 0}}});
        assert_eq!(from_bench_report(&v).ok(), Some(f(0, 1.01, 0.999)));
        assert!(from_bench_report(&serde_json::json!({"accuracy": {}})).is_err());
    }
}
