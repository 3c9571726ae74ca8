// Gradcheck properties: first and second derivatives of every differentiable op, in float64.
//
// Each property draws a CaseSeed (FsCheck), from which OpCatalog draws shapes, axes, indices and
// values with Higher's Philox generator on the device under test. A failure reports
//   - the op with its drawn parameters, the input shapes and the case seed ("[case seed 123456]"),
//     the worst Jacobian entry, analytical vs numerical, and
//   - FsCheck's replay seeds:
//       Falsifiable, after 9 tests (0 shrinks) (12484564718108146778,3267915471901843173).
//       Last step was invoked with size of 31 and seed of (6006158576825441284,2943498743016206771).
//       Replay directly at failing step with (6006158576825441284,2943498743016206771,31).
// To replay the whole run, put the first pair on the failing property; to jump straight to the
// failing case, use the triple:
//     [Property(Replay = "(6006158576825441284,2943498743016206771,31)")]
//     public void Slice(CaseSeed seed) => Check(OpCatalog.Slice, seed);
// or check the one case in a [Fact]: Check(OpCatalog.Slice, new CaseSeed(399491945965314329)).
// Case seeds do not shrink (a smaller seed is not a simpler case).
// Every property class runs from the fixed seeds in GradCheckSeeds.cs, so CI draws the same cases on
// every run; change them there to explore new cases.
//
// The device is a parameter: OpProperties is bound to the CPU by CpuOpProperties; another backend
// binds it with one more sealed subclass carrying the same [Properties] attribute (see
// CrossBackend.cs for the agreement tests against the CPU).

using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Higher.GradCheck;

/// <summary>The seed of one drawn case.</summary>
/// <param name="Value">Seed of the Philox generator the case is drawn from.</param>
public readonly record struct CaseSeed(ulong Value);

/// <summary>FsCheck generators of this project.</summary>
public static class Arbitraries
{
    /// <summary>Case seeds over 60 bits, without shrinking.</summary>
    public static Arbitrary<CaseSeed> CaseSeed() =>
        Gen.Zip(Gen.Choose(0, 1 << 30), Gen.Choose(0, 1 << 30), (hi, lo) => new CaseSeed(((ulong)hi << 30) | (uint)lo)).ToArbitrary();
}

/// <summary>Gradcheck and gradgradcheck of every op in <see cref="OpCatalog"/> on <see cref="Device"/>.</summary>
public abstract class OpProperties
{
    /// <summary>Device the cases are created on.</summary>
    protected abstract Device Device { get; }

    /// <summary>Builds the case of <paramref name="seed"/> and checks its first and second derivatives.</summary>
    protected void Check(Func<CaseGen, OpCase> build, CaseSeed seed)
    {
        ArgumentNullException.ThrowIfNull(build);
        var c = build(new CaseGen(seed.Value, Device));
        string name = $"{c.Describe()} on {Device} [case seed {seed.Value}]";
        GradChecker.GradCheck(c.F, c.Inputs, c.Eps, c.Atol, c.Rtol, name);
        GradChecker.GradGradCheck(c.F, c.Inputs, seed: seed.Value, eps: c.Eps, atol: c.Atol, rtol: c.Rtol, name: name);
    }

    [Property]
    public void Affine(CaseSeed seed) => Check(OpCatalog.Affine, seed);

    [Property]
    public void Neg(CaseSeed seed) => Check(OpCatalog.Neg, seed);

    [Property]
    public void ScalarArithmetic(CaseSeed seed) => Check(OpCatalog.ScalarArithmetic, seed);

    [Property]
    public void Exp(CaseSeed seed) => Check(OpCatalog.Exp, seed);

    [Property]
    public void Log(CaseSeed seed) => Check(OpCatalog.Log, seed);

    [Property]
    public void Log1p(CaseSeed seed) => Check(OpCatalog.Log1p, seed);

    [Property]
    public void Sqrt(CaseSeed seed) => Check(OpCatalog.Sqrt, seed);

    [Property]
    public void SafeSqrt(CaseSeed seed) => Check(OpCatalog.SafeSqrt, seed);

    [Property]
    public void Abs(CaseSeed seed) => Check(OpCatalog.Abs, seed);

    [Property]
    public void Sign(CaseSeed seed) => Check(OpCatalog.Sign, seed);

    [Property]
    public void Relu(CaseSeed seed) => Check(OpCatalog.Relu, seed);

    [Property]
    public void LeakyRelu(CaseSeed seed) => Check(OpCatalog.LeakyRelu, seed);

    [Property]
    public void Sigmoid(CaseSeed seed) => Check(OpCatalog.Sigmoid, seed);

    [Property]
    public void Tanh(CaseSeed seed) => Check(OpCatalog.Tanh, seed);

    [Property]
    public void Softplus(CaseSeed seed) => Check(OpCatalog.Softplus, seed);

    [Property]
    public void SoftplusBeta(CaseSeed seed) => Check(OpCatalog.SoftplusBeta, seed);

    [Property]
    public void Erf(CaseSeed seed) => Check(OpCatalog.Erf, seed);

    [Property]
    public void Gelu(CaseSeed seed) => Check(OpCatalog.Gelu, seed);

    [Property]
    public void GeluTanh(CaseSeed seed) => Check(OpCatalog.GeluTanh, seed);

    [Property]
    public void Reciprocal(CaseSeed seed) => Check(OpCatalog.Reciprocal, seed);

    [Property]
    public void PowScalar(CaseSeed seed) => Check(OpCatalog.PowScalar, seed);

    [Property]
    public void PowTensor(CaseSeed seed) => Check(OpCatalog.PowTensor, seed);

    [Property]
    public void Clamp(CaseSeed seed) => Check(OpCatalog.Clamp, seed);

    [Property]
    public void Sin(CaseSeed seed) => Check(OpCatalog.Sin, seed);

    [Property]
    public void Cos(CaseSeed seed) => Check(OpCatalog.Cos, seed);

    [Property]
    public void Square(CaseSeed seed) => Check(OpCatalog.Square, seed);

    [Property]
    public void Clone(CaseSeed seed) => Check(OpCatalog.Clone, seed);

    [Property]
    public void CastRoundTrip(CaseSeed seed) => Check(OpCatalog.CastRoundTrip, seed);

    [Property]
    public void Add(CaseSeed seed) => Check(OpCatalog.Add, seed);

    [Property]
    public void Sub(CaseSeed seed) => Check(OpCatalog.Sub, seed);

    [Property]
    public void Mul(CaseSeed seed) => Check(OpCatalog.Mul, seed);

    [Property]
    public void Div(CaseSeed seed) => Check(OpCatalog.Div, seed);

    [Property]
    public void ReluGrad(CaseSeed seed) => Check(OpCatalog.ReluGrad, seed);

    [Property]
    public void AddScaled(CaseSeed seed) => Check(OpCatalog.AddScaled, seed);

    [Property]
    public void MulSelf(CaseSeed seed) => Check(OpCatalog.MulSelf, seed);

    [Property]
    public void Maximum(CaseSeed seed) => Check(OpCatalog.Maximum, seed);

    [Property]
    public void Minimum(CaseSeed seed) => Check(OpCatalog.Minimum, seed);

    [Property]
    public void Where(CaseSeed seed) => Check(OpCatalog.Where, seed);

    [Property]
    public void WhereScalar(CaseSeed seed) => Check(OpCatalog.WhereScalar, seed);

    [Property]
    public void Sum(CaseSeed seed) => Check(OpCatalog.Sum, seed);

    [Property]
    public void Mean(CaseSeed seed) => Check(OpCatalog.Mean, seed);

    [Property]
    public void Var(CaseSeed seed) => Check(OpCatalog.Var, seed);

    [Property]
    public void Std(CaseSeed seed) => Check(OpCatalog.Std, seed);

    [Property]
    public void Amax(CaseSeed seed) => Check(OpCatalog.Amax, seed);

    [Property]
    public void Amin(CaseSeed seed) => Check(OpCatalog.Amin, seed);

    [Property]
    public void MaxAlongAxis(CaseSeed seed) => Check(OpCatalog.MaxAlongAxis, seed);

    [Property]
    public void MinAlongAxis(CaseSeed seed) => Check(OpCatalog.MinAlongAxis, seed);

    [Property]
    public void LogSumExp(CaseSeed seed) => Check(OpCatalog.LogSumExp, seed);

    [Property]
    public void Softmax(CaseSeed seed) => Check(OpCatalog.Softmax, seed);

    [Property]
    public void LogSoftmax(CaseSeed seed) => Check(OpCatalog.LogSoftmax, seed);

    [Property]
    public void Reshape(CaseSeed seed) => Check(OpCatalog.Reshape, seed);

    [Property]
    public void Permute(CaseSeed seed) => Check(OpCatalog.Permute, seed);

    [Property]
    public void Transpose(CaseSeed seed) => Check(OpCatalog.Transpose, seed);

    [Property]
    public void Expand(CaseSeed seed) => Check(OpCatalog.Expand, seed);

    [Property]
    public void Squeeze(CaseSeed seed) => Check(OpCatalog.Squeeze, seed);

    [Property]
    public void Unsqueeze(CaseSeed seed) => Check(OpCatalog.Unsqueeze, seed);

    [Property]
    public void Flatten(CaseSeed seed) => Check(OpCatalog.Flatten, seed);

    [Property]
    public void Cat(CaseSeed seed) => Check(OpCatalog.Cat, seed);

    [Property]
    public void Stack(CaseSeed seed) => Check(OpCatalog.Stack, seed);

    [Property]
    public void Narrow(CaseSeed seed) => Check(OpCatalog.Narrow, seed);

    [Property]
    public void Select(CaseSeed seed) => Check(OpCatalog.Select, seed);

    [Property]
    public void Slice(CaseSeed seed) => Check(OpCatalog.Slice, seed);

    [Property]
    public void Split(CaseSeed seed) => Check(OpCatalog.Split, seed);

    [Property]
    public void IndexSelect(CaseSeed seed) => Check(OpCatalog.IndexSelect, seed);

    [Property]
    public void Gather(CaseSeed seed) => Check(OpCatalog.Gather, seed);

    [Property]
    public void ScatterAdd(CaseSeed seed) => Check(OpCatalog.ScatterAdd, seed);

    [Property]
    public void IndexAdd(CaseSeed seed) => Check(OpCatalog.IndexAdd, seed);

    [Property]
    public void MatMul(CaseSeed seed) => Check(OpCatalog.MatMul, seed);

    [Property]
    public void Linear(CaseSeed seed) => Check(OpCatalog.Linear, seed);

    [Property]
    public void MseLoss(CaseSeed seed) => Check(OpCatalog.MseLoss, seed);

    [Property]
    public void L1Loss(CaseSeed seed) => Check(OpCatalog.L1Loss, seed);

    [Property]
    public void CrossEntropy(CaseSeed seed) => Check(OpCatalog.CrossEntropy, seed);

    [Property]
    public void NllLoss(CaseSeed seed) => Check(OpCatalog.NllLoss, seed);

    [Property]
    public void BceWithLogits(CaseSeed seed) => Check(OpCatalog.BceWithLogits, seed);

    [Property]
    public void MlpLoss(CaseSeed seed) => Check(OpCatalog.MlpLoss, seed);
}

/// <summary>The properties on the managed CPU backend.</summary>
[Properties(MaxTest = 40, Arbitrary = [typeof(Arbitraries)], Replay = GradCheckSeeds.Replay)]
public sealed class CpuOpProperties : OpProperties
{
    protected override Device Device => Device.Cpu;
}
