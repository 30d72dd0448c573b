use clap::Parser;

fn main() {
    let cli = keyward::cli::Cli::parse();
    std::process::exit(keyward::cli::run(cli));
}
