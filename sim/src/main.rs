//! `sim`: runs scenarios and writes `target/sim/report.json` and `report.md`.
//! Exits 1 when a scenario breaks a guarantee (after writing the reports).

use clap::Parser;
use sim::check::ScenarioReport;
use sim::scenario::Scenario;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Deterministic simulation of the consumer on virtual time")]
struct Args {
    /// Run only these scenarios (file names without `.toml`, comma separated).
    #[arg(long, env = "SCENARIO")]
    scenario: Option<String>,
    /// Replace each scenario's seed.
    #[arg(long, env = "SEED")]
    seed: Option<u64>,
    /// Where the scenario files are.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))]
    dir: PathBuf,
    /// Where the reports go.
    #[arg(long, default_value = "target/sim")]
    out: PathBuf,
    /// Instead of the scenarios: run `bench-accuracy` and hold it to this
    /// `make bench` report (target/bench/report.json); exit 1 outside the
    /// tolerances. Writes compare-bench.{json,md} into --out.
    #[arg(long, value_name = "BENCH_REPORT")]
    compare_bench: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(bench) = &args.compare_bench {
        return compare_bench(&args, bench);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if let Some(names) = args.scenario.as_deref().filter(|n| !n.is_empty()) {
        let names: Vec<&str> = names.split(',').map(str::trim).collect();
        for name in &names {
            if !files
                .iter()
                .any(|p| p.file_stem().is_some_and(|s| s == *name))
            {
                anyhow::bail!("no scenario {name}.toml in {}", args.dir.display());
            }
        }
        files.retain(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|s| names.contains(&s))
        });
    }
    let mut reports = Vec::new();
    for f in &files {
        let mut s = Scenario::load(f)?;
        if let Some(seed) = args.seed {
            s.seed = seed;
        }
        eprintln!("sim: {} (seed {}) ...", s.name, s.seed);
        let r = sim::run(&s)?;
        eprintln!(
            "sim: {}: {} messages, {} sent, {} pending, violations {}, lost {}, duplicates {}, dlq throttled-only {}, stalled {} ({:.1} s wall, {:.0} s simulated)",
            r.name,
            r.messages,
            r.detail.sent,
            r.detail.pending,
            r.violations,
            r.lost,
            r.duplicates,
            r.dlq_throttled_only,
            r.stalled_quiet,
            r.wall_s,
            r.simulated_s
        );
        reports.push(r);
    }
    std::fs::create_dir_all(&args.out)?;
    let mut plots = Vec::new();
    for r in &reports {
        let files = sim::plot::write(&args.out.join(&r.name), &r.name, &r.plots)?;
        plots.push((r.name.clone(), files));
    }
    let json = serde_json::to_string_pretty(&Report {
        scenarios: &reports,
    })?;
    std::fs::write(args.out.join("report.json"), json + "\n")?;
    std::fs::write(args.out.join("report.md"), markdown(&reports, &plots))?;
    eprintln!(
        "sim: wrote {}/report.json, report.md and the plots (<scenario>/*.svg)",
        args.out.display()
    );
    if reports.iter().any(|r| !r.passed()) {
        anyhow::bail!("a scenario broke a delivery guarantee (see the report)");
    }
    Ok(())
}

/// `--compare-bench`: the mirror scenario against a real bench report.
fn compare_bench(args: &Args, bench_path: &std::path::Path) -> anyhow::Result<()> {
    use sim::bench;
    let text = std::fs::read_to_string(bench_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {e} (run `make bench` first)",
            bench_path.display()
        )
    })?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", bench_path.display()))?;
    let real = bench::from_bench_report(&report)
        .map_err(|e| anyhow::anyhow!("{}: {e}", bench_path.display()))?;
    let mut s = Scenario::load(&args.dir.join(format!("{}.toml", bench::SCENARIO)))?;
    if let Some(seed) = args.seed {
        s.seed = seed;
    }
    eprintln!(
        "sim: {} (seed {}) against {} ...",
        s.name,
        s.seed,
        bench_path.display()
    );
    let r = sim::run(&s)?;
    let simulated = bench::from_sim(&r)?;
    let c = bench::compare(&simulated, &real);
    std::fs::create_dir_all(&args.out)?;
    sim::plot::write(&args.out.join(&r.name), &r.name, &r.plots)?;
    let json = serde_json::json!({
        "scenario": &r,
        "bench_report": bench_path.display().to_string(),
        "bench": real,
        "simulation": simulated,
        "comparison": &c,
    });
    std::fs::write(
        args.out.join("compare-bench.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    let md = bench::markdown(&c, &r, &bench_path.display().to_string());
    std::fs::write(args.out.join("compare-bench.md"), &md)?;
    eprint!("{md}");
    eprintln!(
        "sim: wrote {}/compare-bench.json and compare-bench.md",
        args.out.display()
    );
    if !c.agrees {
        anyhow::bail!("the simulation is outside its tolerances against the real stack");
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Report<'a> {
    scenarios: &'a [ScenarioReport],
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

fn markdown(reports: &[ScenarioReport], plots: &[(String, Vec<String>)]) -> String {
    let mut md = String::from(
        "# Simulation report\n\n\
         Generated by `make sim`. Every run is the real consumer on virtual time; \
         the same seed gives the same numbers (all but `wall s`).\n\n\
         | scenario | seed | wall s | simulated s | messages | accounts | sent | pending | violations | lost | duplicates | DLQ throttled-only | stalled (quiet) | budget used (backlogged) | max lateness s (backlogged; behind the reserve) | quiet p99 s | SQS req/msg | handler ms/msg | GB-s/msg | USD per 1M |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in reports {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}; {}) | {} | {} | {} | {} | {} |\n",
            r.name,
            r.seed,
            r.wall_s,
            r.simulated_s,
            r.messages,
            r.accounts,
            r.detail.sent,
            r.detail.pending,
            r.violations,
            r.lost,
            r.duplicates,
            r.dlq_throttled_only,
            r.stalled_quiet,
            opt(r.budget_used_backlogged),
            r.max_lateness_s,
            r.max_lateness_backlogged_s,
            r.max_lateness_backlogged_reserve_s,
            opt(r.quiet_p99_s),
            opt(r.sqs_requests_per_delivered),
            opt(r.handler_ms_per_delivered),
            opt(r.lambda_gb_s_per_delivered),
            opt(r.cost_per_million_usd),
        ));
    }
    md.push_str("\nDetails (SQS requests by kind, refusals, redrives, fingerprints) are in `report.json`.\n");
    md.push_str(
        "\n## Plots\n\n`sends.svg`: the busiest account's sends against `burst + rate × t / 60`; \
         `latency.svg`: quiet accounts' accepted → upstream latency (p50, p99, max per slice of the run).\n\n",
    );
    for (name, files) in plots {
        let links: Vec<String> = files.iter().map(|f| format!("[{f}]({name}/{f})")).collect();
        let shown = if links.is_empty() {
            "nothing to plot".to_owned()
        } else {
            links.join(", ")
        };
        md.push_str(&format!("- {name}: {shown}\n"));
    }
    md
}
