//! Run the Kubernetes API stand-in until Ctrl-C, for poking at it with kubectl:
//! `cargo run -p baton-sim --example cluster` then `kubectl --server <printed url> get ns`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cluster = sim::cluster::Cluster::start().await?;
    println!("{}", cluster.url());
    tokio::signal::ctrl_c().await?;
    cluster.stop().await;
    Ok(())
}
