//! `robustify train classifier`: the CIFAR-10 ResNet-20 (the stand-in, or a surrogate).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use robustify_standin::cifar::Config;
use robustify_standin::cifar_train::{Hooks, TrainConfig, train, write_card};
use robustify_train::dataset::ImageFolder;

use super::{Driver, RunArgs, command_line, with_bar};

#[derive(clap::Args)]
pub(super) struct ClassifierArgs {
    /// Training image folder (`<class>/<image>`), e.g. ../shared/data/cifar10/train.
    #[arg(long)]
    data: PathBuf,
    /// Test image folder, scored after every epoch.
    #[arg(long)]
    test: Option<PathBuf>,
    /// Epochs in total.
    #[arg(long)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate (SGD, Nesterov momentum 0.9, cosine schedule).
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Seed of initialisation, data order and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    run: RunArgs,
}

pub(super) fn run(a: ClassifierArgs) -> anyhow::Result<ExitCode> {
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        momentum: 0.9,
        weight_decay: a.weight_decay,
        seed: a.seed,
        arch: Config::resnet20(),
    };
    cfg.validate()?;
    let load = |dir: &PathBuf| with_bar(dir, |p| Ok(ImageFolder::load(dir, p)?));
    let data = load(&a.data)?;
    let test = a.test.as_ref().map(load).transpose()?;
    let driver = Driver::new(a.run.max_minutes, cfg.epochs);
    let progress = train(
        &data,
        test.as_ref(),
        &cfg,
        &a.run.out,
        a.run.resume,
        Duration::from_secs(a.run.save_every),
        Hooks {
            on_batch: &mut |r| {
                let msg = format!("loss {:.3} acc {:.3}", r.loss, r.accuracy);
                driver.batch(r.epoch, r.batch, r.batches, msg);
            },
            on_epoch: &mut |e| driver.epoch(e),
            should_stop: &mut |p| driver.should_stop(p),
        },
    )?;
    write_card(
        &a.run.out,
        &cfg,
        &progress,
        &a.data,
        a.test.as_deref(),
        &command_line(),
    )?;
    driver.finish(&progress)?;
    Ok(ExitCode::SUCCESS)
}
