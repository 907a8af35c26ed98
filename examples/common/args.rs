//! The command-line options the examples read: `--name VALUE` pairs, flags, and `--model`
//! (SmolLM2 from `prism fetch smollm2` by default).

/// The example's arguments after the program name.
pub struct Args(Vec<String>);

impl Args {
    /// The process's arguments.
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1).collect())
    }

    /// The value after `name`, if given.
    pub fn opt(&self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|a| a == name)?;
        self.0.get(i + 1).cloned()
    }

    /// Whether the flag `name` is given.
    #[allow(dead_code)]
    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    /// `--model`, or the default SmolLM2 GGUF.
    #[allow(dead_code)]
    pub fn model(&self) -> String {
        self.opt("--model")
            .unwrap_or_else(|| "assets/SmolLM2-135M-Instruct.Q4_1.gguf".into())
    }
}
