use super::{Cli, Result, status::Output};
use crate::deploy::update as upd;
use crate::plan::{self, Action, Plan, Replacement};
use clap::Args;
use console::style;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kube-aws diff                         # coloured diffs of every changed stack and cloud-config, then the plan
  kube-aws diff --targets general       # only what `update --targets general` would change
  kube-aws diff --output json | jq '.rolls[] | {pool, reasons}'
  kube-aws diff --change-sets           # also ask CloudFormation change sets for their replacement verdicts
  kube-aws diff --refresh-ami           # what moving to the newest Ubuntu image would roll (writes nothing)

Exit codes: 0 no change, 2 changes, 1 error (like `terraform plan -detailed-exitcode`).")]
pub struct DiffArgs {
    /// Restrict to these stacks: network, etcd, control-plane, node-pool/<pool> or a pool name.
    #[arg(long, value_delimiter = ',', value_name = "STACK,…")]
    pub targets: Vec<String>,
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Output,
    /// Lines of context around each change.
    #[arg(short = 'C', long = "context", default_value_t = 3, value_name = "N")]
    pub context: usize,
    /// Create a CloudFormation change set (type UPDATE) per modified stack, read its
    /// verdicts, and delete it. Never executes it; uploads the changed templates.
    #[arg(long)]
    pub change_sets: bool,
    /// Plan as if ami.yaml pinned the newest Ubuntu image; ami.yaml is not written
    /// (`update --refresh-ami` writes it).
    #[arg(long)]
    pub refresh_ami: bool,
}

/// Loads, fetches and plans; shared by `diff` and `update`.
pub struct Planned {
    pub sdk: aws_config::SdkConfig,
    pub cfg: crate::config::Config,
    pub model: crate::model::Model,
    pub assets: crate::render::AssetSet,
    pub fetched: upd::Fetched,
    pub targets: Option<Vec<String>>,
    pub plan: Plan,
    /// With --refresh-ami: the newer image the plan pins, not yet written to ami.yaml.
    pub new_pin: Option<crate::config::ami::AmiPin>,
}

pub async fn planned(
    cli: &Cli,
    targets: &[String],
    context: usize,
    refresh_ami: bool,
) -> Result<Planned> {
    let region = crate::config::read(&super::cluster_yaml(cli))?.region;
    let sdk = crate::aws::sdk_config(&region, None).await;
    let new_pin = if refresh_ami {
        let cfg = crate::config::read(&super::cluster_yaml(cli))?;
        super::ami::to_pin(&sdk, &cfg, &cli.dir, true).await?
    } else {
        None
    };
    let (cfg, model, assets) = super::up::load_pinned(cli, new_pin.as_ref())?;
    let fetched = upd::fetch_deployed(&sdk, &cfg, &model).await?;
    let targets = if targets.is_empty() {
        None
    } else {
        Some(plan::targets::resolve(
            targets,
            &upd::known_stacks(&assets, &fetched.deployed),
        )?)
    };
    let desired = upd::desired(&sdk, &cfg, &model);
    let plan = plan::plan(&plan::Inputs {
        cluster: &cfg.cluster_name,
        prefix: &model.s3_prefix,
        assets: &assets,
        desired: &desired,
        deployed: &fetched.deployed,
        targets: targets.as_deref(),
        context,
    });
    Ok(Planned {
        sdk,
        cfg,
        model,
        assets,
        fetched,
        targets,
        plan,
        new_pin,
    })
}

/// Runs `diff`; Ok(true) when something would change.
pub fn run(cli: &Cli, a: &DiffArgs) -> Result<bool> {
    super::up::runtime()?.block_on(async {
        let mut p = planned(cli, &a.targets, a.context, a.refresh_ami).await?;
        if let Some(pin) = &p.new_pin {
            eprintln!(
                "note: planned with AMI {}; {} is not written (`kube-aws update --refresh-ami` writes it)",
                pin.image_id,
                crate::config::ami::FILE
            );
        }
        let mut notes = Vec::new();
        if a.change_sets && p.plan.changed {
            notes = upd::annotate_with_change_sets(
                &p.sdk,
                &p.model,
                &p.assets,
                &p.fetched,
                &mut p.plan,
            )
            .await?;
        }
        match a.output {
            Output::Json => {
                let mut v = serde_json::to_value(&p.plan)?;
                if a.change_sets {
                    v["change_sets"] = serde_json::json!(notes);
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            }
            Output::Text => {
                print_diffs(&p.plan);
                for n in &notes {
                    println!("change set: {n}");
                }
                print_summary(&p.plan);
            }
        }
        Ok(p.plan.changed)
    })
}

fn colour(diff: &str) {
    for line in diff.lines() {
        let s = if line.starts_with("+++") || line.starts_with("---") {
            style(line).bold()
        } else if line.starts_with('+') {
            style(line).green()
        } else if line.starts_with('-') {
            style(line).red()
        } else if line.starts_with("@@") {
            style(line).cyan()
        } else {
            style(line)
        };
        println!("{s}");
    }
}

pub fn print_diffs(p: &Plan) {
    for s in &p.stacks {
        println!(
            "{}",
            style(format!("# stack {} ({:?})", s.name, s.action)).bold()
        );
        colour(&s.diff);
    }
    for u in &p.userdata {
        let what = if u.role == crate::plan::NODE_AGENT {
            "the kube-aws node agent: every node that runs it rolls".to_string()
        } else if let Some(r) = u.role.strip_suffix(crate::plan::NODE_CONFIG) {
            format!("node config {r} (`kube-aws node plan` shows its steps)")
        } else {
            format!("cloud-config {}", u.role)
        };
        println!("{}", style(format!("# {what} ({:?})", u.action)).bold());
        colour(&u.diff);
    }
    for o in &p.addons {
        println!(
            "{}",
            style(format!("# add-on object {} ({:?})", o.object, o.action)).bold()
        );
        colour(&o.diff);
    }
}

fn sign(a: Action) -> console::StyledObject<&'static str> {
    match a {
        Action::Add => style("+").green(),
        Action::Modify => style("~").yellow(),
        Action::Remove => style("-").red(),
    }
}

pub fn print_summary(p: &Plan) {
    if !p.changed {
        println!("No changes: {} matches cluster.yaml.", p.cluster);
        if !p.unchanged.is_empty() {
            println!("  unchanged: {}", p.unchanged.join(", "));
        }
        return;
    }
    println!(
        "{}",
        style(format!(
            "Plan for {}: {} stack(s) change, {} group(s) of instances roll",
            p.cluster,
            p.stacks.len(),
            p.rolls.len()
        ))
        .bold()
    );
    if let Some(t) = &p.targets {
        println!(
            "  targets: {} (other stacks keep their deployed templates)",
            t.join(", ")
        );
    }
    for s in &p.stacks {
        println!("  {} {}", sign(s.action), s.name);
        for r in &s.resources {
            let what = match (r.action, r.replacement) {
                (Action::Modify, Some(Replacement::True)) => style("replaced".to_string()).red(),
                (Action::Modify, Some(Replacement::Conditional)) => {
                    style("maybe replaced".to_string()).yellow()
                }
                (Action::Modify, _) => style("in place".to_string()),
                (Action::Add, _) => style("added".to_string()).green(),
                (Action::Remove, _) => style("removed".to_string()).red(),
            };
            let props = if r.changed.is_empty() {
                String::new()
            } else {
                format!(" [{}]", r.changed.join(", "))
            };
            println!(
                "      {} {} ({}) {what}{props}",
                sign(r.action),
                r.logical_id,
                r.resource_type
            );
        }
        for sec in &s.sections {
            println!("      ~ {sec}");
        }
    }
    if let Some(t) = &p.tags {
        for (k, v) in &t.added {
            println!("  + stack tag {k}={v}");
        }
        for (k, (a, b)) in &t.changed {
            println!("  ~ stack tag {k}: {a} → {b}");
        }
        for k in t.removed.keys() {
            println!("  - stack tag {k}");
        }
        println!(
            "    (tags propagate to every stack and resource in place; no instance rolls for them)"
        );
    }
    if !p.addons.is_empty() {
        println!(
            "  add-on objects the controllers apply (server-side, within 5 minutes of the update):"
        );
        for o in &p.addons {
            println!("      {} {}", sign(o.action), o.object);
        }
        if p.addons.iter().any(|o| o.action == Action::Remove) {
            println!(
                "      (removed objects stay in the cluster until deleted: `kubectl delete` them)"
            );
        }
    }
    if !p.unchanged.is_empty() {
        println!("  unchanged: {}", p.unchanged.join(", "));
    }
    if p.rolls.is_empty() {
        println!("No instances roll.");
    } else {
        println!("{}", style("Rolls:").bold());
        for r in &p.rolls {
            println!("  {} — {}", style(&r.stack).yellow(), r.reasons.join("; "));
            println!("      {}", r.how);
            if !r.groups.is_empty() {
                println!("      order within the stack: {}", r.groups.join(" → "));
            }
        }
        if !p.roll_order.is_empty() {
            let waves: Vec<String> = p
                .roll_order
                .iter()
                .enumerate()
                .map(|(i, w)| format!("{}) {}", i + 1, w.join(" + ")))
                .collect();
            println!("  roll order: {}", waves.join("  then  "));
        }
    }
    for w in &p.warnings {
        println!("{} {w}", style("warning:").yellow());
    }
}
