//! The outcome of the runner: one row per scenario and invariant, held or
//! broken, with the numbers behind it; printed as a table.

/// One invariant as checked.
pub struct Row {
    pub scenario: &'static str,
    pub invariant: String,
    pub held: bool,
    pub numbers: String,
}

/// The rows of one scenario.
pub struct Rows {
    scenario: &'static str,
    pub rows: Vec<Row>,
}

impl Rows {
    pub fn new(scenario: &'static str) -> Rows {
        Rows {
            scenario,
            rows: Vec::new(),
        }
    }

    /// Records an invariant.
    pub fn check(&mut self, invariant: &str, held: bool, numbers: impl Into<String>) {
        let numbers = numbers.into();
        println!(
            "  [{}] {invariant}: {numbers}",
            if held { "held" } else { "BROKEN" }
        );
        self.rows.push(Row {
            scenario: self.scenario,
            invariant: invariant.to_string(),
            held,
            numbers,
        });
    }

    /// Records an invariant from a result: `Ok(numbers)` held, `Err(why)` broken.
    pub fn result(&mut self, invariant: &str, r: Result<String, String>) {
        match r {
            Ok(n) => self.check(invariant, true, n),
            Err(e) => self.check(invariant, false, e),
        }
    }

    /// The scenario could not run to its end: what stopped it.
    pub fn aborted(&mut self, why: &str) {
        self.check("scenario ran to its end", false, why);
    }
}

/// The table, Markdown-shaped so it can be pasted into BENCHMARKS.md.
pub fn print(rows: &[Row]) {
    println!("\n| scenario | invariant | result | numbers |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.scenario,
            r.invariant,
            if r.held { "held" } else { "**broken**" },
            r.numbers.replace('|', "/").replace('\n', " ")
        );
    }
    let broken = rows.iter().filter(|r| !r.held).count();
    println!(
        "\n{} invariants: {} held, {broken} broken",
        rows.len(),
        rows.len() - broken
    );
}
