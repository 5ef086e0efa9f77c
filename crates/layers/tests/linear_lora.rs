//! The LoRA layer: at initialisation it equals the base layer, merged equals unmerged, unmerge restores the base,
//! and the update is `B A x * alpha / r` computed by hand.
use layers::{Linear, LoraConfig};
use tch::{nn, Device, Kind, Tensor};
use weights::ParamInit;

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

fn layer(base_kind: Kind) -> (nn::VarStore, nn::VarStore, Linear) {
    tch::manual_seed(0);
    let mut base = nn::VarStore::new(Device::Cpu);
    base.set_kind(base_kind);
    let adapters = nn::VarStore::new(Device::Cpu);
    let mut lin =
        Linear::new(base.root().sub("q_proj"), 16, 24, true, ParamInit::Normal { std: 0.2 });
    let cfg = LoraConfig { r: 4, lora_alpha: 8.0, lora_dropout: 0.0, use_rslora: false };
    lin.add_lora(adapters.root().sub("q_proj"), &cfg).unwrap();
    (base, adapters, lin)
}

#[test]
fn zero_init_equals_base() {
    let (_b, adapters, lin) = layer(Kind::Float);
    let xs = Tensor::randn([3, 5, 16], (Kind::Float, Device::Cpu));
    let base = xs.linear(&lin.weight, lin.bias.as_ref());
    assert_eq!(max_abs(&lin.forward(&xs), &base), 0.0);
    let mut names: Vec<_> = adapters.variables().into_keys().collect();
    names.sort();
    assert_eq!(names, ["q_proj.lora_A.weight", "q_proj.lora_B.weight"], "peft's key names");
    let (a, b) = lin.lora_weights().unwrap();
    assert_eq!(a.size(), [4, 16]);
    assert_eq!(f64::try_from(b.abs().sum(Kind::Float)).unwrap(), 0.0, "B starts at zero");
    let bound = (1.0f64 / 16.0).sqrt(); // kaiming_uniform(a=sqrt(5)) on fan_in 16
    assert!(f64::try_from(a.abs().max()).unwrap() <= bound + 1e-6);
}

#[test]
fn update_merge_and_unmerge() {
    let (_b, _a, mut lin) = layer(Kind::Float);
    let (a, b) = lin.lora_weights().map(|(a, b)| (a.shallow_clone(), b.shallow_clone())).unwrap();
    tch::no_grad(|| {
        b.shallow_clone().copy_(&(Tensor::randn([24, 4], (Kind::Float, Device::Cpu)) * 0.5));
    });
    let xs = Tensor::randn([2, 7, 16], (Kind::Float, Device::Cpu));
    let by_hand =
        xs.linear(&lin.weight, lin.bias.as_ref()) + xs.matmul(&a.tr()).matmul(&b.tr()) * 2.0;
    let unmerged = tch::no_grad(|| lin.forward(&xs));
    assert!(max_abs(&unmerged, &by_hand) < 1e-5);
    let w0 = lin.weight.copy();
    lin.merge().unwrap();
    assert!(lin.is_merged());
    let merged = tch::no_grad(|| lin.forward(&xs));
    assert!(max_abs(&merged, &unmerged) < 1e-5, "merged equals unmerged");
    lin.merge().unwrap(); // idempotent
    assert!(max_abs(&tch::no_grad(|| lin.forward(&xs)), &unmerged) < 1e-5);
    lin.unmerge().unwrap();
    assert!(max_abs(&lin.weight, &w0) < 1e-6, "unmerge restores the base");
}

#[test]
fn bf16_base_with_f32_adapter() {
    let (_b, _a, mut lin) = layer(Kind::BFloat16);
    let (_, b) = lin.lora_weights().unwrap();
    assert_eq!(b.kind(), Kind::Float, "adapters train in f32");
    tch::no_grad(|| {
        b.shallow_clone().copy_(&(Tensor::randn([24, 4], (Kind::Float, Device::Cpu)) * 0.5));
    });
    let xs = Tensor::randn([2, 3, 16], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
    let y = tch::no_grad(|| lin.forward(&xs));
    assert_eq!(y.kind(), Kind::BFloat16);
    lin.merge().unwrap();
    let ym = tch::no_grad(|| lin.forward(&xs));
    // bf16 rounding of the merged weight: within a few bf16 ulps of the output scale
    let scale = f64::try_from(y.to_kind(Kind::Float).abs().max()).unwrap();
    assert!(max_abs(&ym.to_kind(Kind::Float), &y.to_kind(Kind::Float)) < 0.05 * scale.max(1.0));
}

#[test]
fn gradients_reach_the_adapter_only_through_b_at_first() {
    let (_b, adapters, lin) = layer(Kind::Float);
    let xs = Tensor::randn([4, 16], (Kind::Float, Device::Cpu));
    lin.forward_t(&xs, true).square().sum(Kind::Float).backward();
    let vars = adapters.variables();
    let ga = vars["q_proj.lora_A.weight"].grad();
    let gb = vars["q_proj.lora_B.weight"].grad();
    assert_eq!(f64::try_from(ga.abs().sum(Kind::Float)).unwrap(), 0.0, "dL/dA = 0 while B = 0");
    assert!(f64::try_from(gb.abs().sum(Kind::Float)).unwrap() > 0.0);
}

#[test]
fn bad_configs_and_double_adapters() {
    let (_b, adapters, mut lin) = layer(Kind::Float);
    let cfg = LoraConfig { r: 4, lora_alpha: 8.0, lora_dropout: 0.0, use_rslora: false };
    assert!(lin
        .add_lora(adapters.root().sub("again"), &cfg)
        .unwrap_err()
        .to_string()
        .contains("already has"));
    let base = nn::VarStore::new(Device::Cpu);
    let mut fresh = Linear::new(base.root(), 4, 4, false, ParamInit::Empty);
    let bad = LoraConfig { r: 0, ..cfg.clone() };
    assert!(fresh
        .add_lora(adapters.root().sub("x"), &bad)
        .unwrap_err()
        .to_string()
        .contains("r must be positive"));
    let mut bf = nn::VarStore::new(Device::Cpu);
    bf.set_kind(Kind::BFloat16);
    assert!(fresh.add_lora(bf.root(), &cfg).unwrap_err().to_string().contains("f32"));
    assert!(fresh.merge().is_err());
    let rs = LoraConfig { use_rslora: true, ..cfg };
    assert_eq!(rs.scaling(), 4.0);
}
