// Migrations are embedded at compile time; rebuild when sql/ changes (a new
// file included).
fn main() {
    println!("cargo:rerun-if-changed=sql");
}
