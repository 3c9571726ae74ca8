using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The checked backend refuses calls that break IBackend's contract, naming the kernel and the
/// operand; the test projects run every backend under it (so the rest of the suite proves the
/// engine keeps the contract).
/// </summary>
public sealed class CheckedBackendTests
{
    private static readonly CheckedBackend Checked = new(ReferenceBackend.Instance);

    private static IStorage F64(params double[] values) => Checked.Upload<double>(values, DType.Float64);

    private static string Refusal(Action call) => Assert.Throws<ArgumentException>(call).Message;

    [Fact]
    public void TheTestsRunEveryBackendUnderTheCheckedBackend()
    {
        Assert.True(Backends.CheckKernelCalls);
        Assert.IsType<CheckedBackend>(Backends.For(Device.Cpu));
        Assert.IsType<CheckedBackend>(Tensor.Zeros(new Shape(2)).Backend);
    }

    [Fact]
    public void Binary_ShapeLargerThanItsStorage_IsRefusedNamingTheOperand()
    {
        var a = F64(1, 2, 3, 4);
        var b = F64(1, 2, 3);
        var y = Checked.Allocate(DType.Float64, 4);
        string message = Refusal(() => Checked.Binary(BinaryOp.Add, a, new Shape(4), b, new Shape(4), y, new Shape(4)));
        Assert.Equal("Checked reference.Binary(Add): b has shape [4] (4 elements) but its storage holds 3.", message);
    }

    [Fact]
    public void Binary_NotBroadcastable_IsRefused()
    {
        var a = F64(1, 2, 3);
        var b = F64(1, 2);
        var y = Checked.Allocate(DType.Float64, 3);
        Assert.Contains("b of shape [2] does not broadcast to the output shape [3]",
            Refusal(() => Checked.Binary(BinaryOp.Mul, a, new Shape(3), b, new Shape(2), y, new Shape(3))), StringComparison.Ordinal);
    }

    [Fact]
    public void Binary_OutputAliasingB_IsRefused()
    {
        var a = F64(1, 2, 3);
        var b = F64(1, 2, 3);
        Assert.Contains("y aliases b", Refusal(() => Checked.Binary(BinaryOp.Sub, a, new Shape(3), b, new Shape(3), b, new Shape(3))), StringComparison.Ordinal);
    }

    [Fact]
    public void Unary_MismatchedDTypes_AreRefused()
    {
        var x = F64(1, 2);
        var y = Checked.Allocate(DType.Float32, 2);
        Assert.Equal("Checked reference.Unary(Exp): x is Float64 but y is Float32.", Refusal(() => Checked.Unary(UnaryOp.Exp, x, y)));
    }

    [Fact]
    public void Gemm_OperandTooShortForItsBatches_IsRefused()
    {
        var a = F64(new double[6]);
        var b = F64(new double[6]);
        var c = Checked.Allocate(DType.Float64, 8);
        string message = Refusal(() => Checked.Gemm(false, false, 2, 2, 2, 3, 1, a, 6, b, 0, 0, c, 4));
        Assert.Equal("Checked reference.Gemm: a needs 12 elements (2 batches, stride 6, 6 per matrix) but its storage holds 6.", message);
    }

    [Fact]
    public void Gather_IndexOutOfRange_IsRefusedWithTheIndexAndTheBound()
    {
        var x = F64(1, 2, 3);
        var index = Checked.Upload<long>([0, 5], DType.Int64);
        var y = Checked.Allocate(DType.Float64, 2);
        Assert.Equal("Checked reference.Gather: index[1] = 5 is out of range [0, 3) of the indexed axis.",
            Refusal(() => Checked.Gather(x, 1, 3, 1, index, 2, y)));
    }

    [Fact]
    public void IndexAdd_NegativeIndex_IsRefused()
    {
        var destination = Checked.Allocate(DType.Float64, 3);
        var index = Checked.Upload<long>([-1], DType.Int64);
        var source = F64(1);
        Assert.Contains("index[0] = -1 is out of range [0, 3)", Refusal(() => Checked.IndexAdd(destination, 1, 3, 1, index, 1, source)), StringComparison.Ordinal);
    }

    [Fact]
    public void StridedCopy_PositionsOutsideTheSource_AreRefused()
    {
        var source = F64(1, 2, 3);
        var destination = Checked.Allocate(DType.Float64, 4);
        Assert.Contains("source positions 0..6 (offset 0, strides [2], shape [4]) leave its storage of 3 elements",
            Refusal(() => Checked.StridedCopy(source, 0, [2], destination, 0, [1], new Shape(4))), StringComparison.Ordinal);
    }

    [Fact]
    public void StorageOfAnotherDevice_IsRefused()
    {
        var foreign = new CheckedBackend(new global::Higher.GradCheck.ForwardingBackend(ReferenceBackend.Instance, new Device(DeviceType.Cpu, 1))).Allocate(DType.Float64, 2);
        var y = Checked.Allocate(DType.Float64, 2);
        Assert.Equal("Checked reference.Unary(Exp): x (Float64, 2 elements) lives on cpu:1, not on this backend's cpu.", Refusal(() => Checked.Unary(UnaryOp.Exp, foreign, y)));
    }

    [Fact]
    public void Conv2d_WeightOfTheWrongLength_IsRefused()
    {
        var g = new ConvGeometry(1, 2, 3, 3, 4, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1, 1);
        var x = Checked.Allocate(DType.Float64, g.InputLength);
        var w = Checked.Allocate(DType.Float64, g.WeightLength - 1);
        var y = Checked.Allocate(DType.Float64, g.OutputLength);
        Assert.Equal($"Checked reference.Conv2d: weight must hold exactly {g.WeightLength} elements but its storage holds {g.WeightLength - 1}.",
            Refusal(() => Checked.Conv2d(g, x, w, y)));
    }

    [Fact]
    public void Conv2dBias_BiasOfTheWrongLengthOrDType_IsRefused()
    {
        var g = new ConvGeometry(1, 2, 3, 3, 4, 2, 2, 2, 2, 1, 1, 0, 0, 1, 1, 1);
        var x = Checked.Allocate(DType.Float64, g.InputLength);
        var w = Checked.Allocate(DType.Float64, g.WeightLength);
        var y = Checked.Allocate(DType.Float64, g.OutputLength);
        Assert.Equal("Checked reference.Conv2dBias: bias must hold exactly 4 elements but its storage holds 3.",
            Refusal(() => Checked.Conv2dBias(g, x, w, Checked.Allocate(DType.Float64, 3), y)));
        Assert.Contains("bias", Refusal(() => Checked.Conv2dBias(g, x, w, Checked.Allocate(DType.Float32, 4), y)), StringComparison.Ordinal);
    }

    [Fact]
    public void Conv2d_GroupsThatDoNotDivideTheChannels_AreRefused()
    {
        var g = new ConvGeometry(1, 3, 3, 3, 4, 1, 1, 3, 3, 1, 1, 0, 0, 1, 1, 2);
        var x = Checked.Allocate(DType.Float64, g.InputLength);
        var w = Checked.Allocate(DType.Float64, g.WeightLength);
        var y = Checked.Allocate(DType.Float64, g.OutputLength);
        Assert.Contains("groups = 2 does not divide C = 3 and O = 4", Refusal(() => Checked.Conv2d(g, x, w, y)), StringComparison.Ordinal);
    }

    [Fact]
    public void MaxPool2d_WindowStartingBelowTheInput_IsRefused()
    {
        var g = new PoolGeometry(1, 4, 4, 3, 2, 2, 2, 2, 2, 0, 0, 1, 1);
        var x = Checked.Allocate(DType.Float64, g.InputLength);
        var y = Checked.Allocate(DType.Float64, g.OutputLength);
        var indices = Checked.Allocate(DType.Int64, g.OutputLength);
        Assert.Contains("output row 2 starts below the input's 4 rows", Refusal(() => Checked.MaxPool2d(g, x, y, indices)), StringComparison.Ordinal);
    }

    [Fact]
    public void Reduce_OutputOfTheWrongLength_IsRefused()
    {
        var x = F64(1, 2, 3, 4, 5, 6);
        var y = Checked.Allocate(DType.Float64, 3);
        Assert.Equal("Checked reference.Reduce(Sum): y must hold exactly 2 elements but its storage holds 3.",
            Refusal(() => Checked.Reduce(ReduceOp.Sum, x, new Shape(2, 3), [false, true], y)));
    }

    [Fact]
    public void ValidCalls_AreForwarded()
    {
        var a = F64(1, 2, 3);
        var b = F64(10);
        var y = Checked.Allocate(DType.Float64, 3);
        Checked.Binary(BinaryOp.Add, a, new Shape(3), b, new Shape(1), y, new Shape(3));
        var result = new double[3];
        Checked.Download<double>(y, result);
        Assert.Equal([11.0, 12.0, 13.0], result);
    }
}
