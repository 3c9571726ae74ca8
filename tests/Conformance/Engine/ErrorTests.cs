namespace Higher.Conformance.Engine;

/// <summary>
/// Failure twins: bad input and misuse of the tape throw the documented exception type
/// (ArgumentException for bad input, InvalidOperationException for tape misuse,
/// ArgumentOutOfRangeException for indices) with a message that names the operands, their
/// shapes and the op involved.
/// </summary>
public abstract class ErrorTests : EngineTestBase
{
    /// <summary>
    /// Whether index bounds are validated before the kernel runs. The engine checks them on the
    /// host only for the CPU (a device check would cost a round-trip); other backends rely on their kernels.
    /// </summary>
    protected virtual bool ChecksIndexBoundsOnHost => Device.Type == DeviceType.Cpu;

    private Tensor Ones(params int[] shape) => Tensor.Ones(new Shape(shape), DType.Float64, Device);

    private static void AssertMentions(Exception e, params string[] fragments)
    {
        foreach (var f in fragments)
        {
            Assert.True(e.Message.Contains(f, StringComparison.Ordinal), $"The message should mention \"{f}\": {e.Message}");
        }
    }

    [Fact]
    public void Add_ThrowsForMismatchedShapes()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Ones(2, 3) + Ones(4));
        AssertMentions(e, "[2, 3]", "[4]", "broadcast");
    }

    [Fact]
    public void Add_NamesNamedOperandsInBroadcastErrors()
    {
        RequireDevice();
        var x = Ones(2, 3);
        x.Name = "x";
        var y = Ones(4);
        y.Name = "y";
        var e = Assert.Throws<ArgumentException>(() => x * y);
        AssertMentions(e, "[2, 3] (x)", "[4] (y)");
    }

    [Fact]
    public void MatMul_ThrowsForInnerDimensionMismatch()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(Ones(2, 3), Ones(4, 5)));
        AssertMentions(e, "MatMul", "[2, 3]", "[4, 5]", "inner");
    }

    [Fact]
    public void MatMul_ThrowsForInnerDimensionMismatchInBatches()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(Ones(2, 2, 3), Ones(2, 4, 5)));
        AssertMentions(e, "MatMul", "[2, 2, 3]", "[2, 4, 5]");
    }

    [Fact]
    public void MatMul_NamesTheCallersShapesWhenBatchesBroadcast()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(Ones(2, 1, 3, 4), Ones(3, 5, 6)));
        AssertMentions(e, "MatMul", "[2, 1, 3, 4]", "[3, 5, 6]");
    }

    [Fact]
    public void MatMul_ThrowsForMismatchedBatchDimensions()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.MatMul(Ones(2, 2, 3), Ones(3, 3, 5)));
        AssertMentions(e, "MatMul", "[2, 2, 3]", "[3, 3, 5]", "[2]", "[3]");
    }

    [Fact]
    public void Add_ThrowsForDTypeMismatch()
    {
        RequireDevice();
        var a = Tensor.Ones([3], DType.Float32, Device);
        var b = Ones(3);
        var e = Assert.Throws<ArgumentException>(() => a + b);
        AssertMentions(e, "float32", "float64", "dtype");
    }

    [Fact]
    public void Grad_ThrowsForInputThatDoesNotRequireGrad()
    {
        RequireDevice();
        var x = Ones(2, 2);
        var w = Ones(2, 2).WithRequiresGrad();
        var loss = (x * w).Sum();
        var e = Assert.Throws<ArgumentException>(() => Autograd.Grad([loss], [x]));
        AssertMentions(e, "[2, 2]", "does not require grad");
    }

    [Fact]
    public void Backward_ThrowsForOutputThatDoesNotRequireGrad()
    {
        RequireDevice();
        var loss = Ones(3).Sum();
        var e = Assert.Throws<InvalidOperationException>(() => loss.Backward());
        AssertMentions(e, "does not require grad");
    }

    [Fact]
    public void Backward_ThrowsWhenASavedTensorWasModifiedInPlace()
    {
        RequireDevice();
        var x = Ones(3).WithRequiresGrad();
        var w = F64([1, 2, 3], 3);
        var y = (x * w).Sum();
        w.MulInPlace(2);
        var e = Assert.Throws<InvalidOperationException>(() => y.Backward());
        AssertMentions(e, "MulBackward", "[3]", "in-place", "version");
    }

    [Fact]
    public void Backward_ThrowsWhenASavedOutputWasModifiedInPlaceUnderNoGrad()
    {
        RequireDevice();
        var x = Ones(2, 2).WithRequiresGrad();
        var y = x.Exp();
        using (Autograd.NoGrad())
        {
            y.AffineInPlace(2);
        }
        var e = Assert.Throws<InvalidOperationException>(() => y.Sum().Backward());
        AssertMentions(e, "ExpBackward", "[2, 2]", "in-place");
    }

    [Fact]
    public void InPlace_ThrowsOnATensorThatRequiresGradWhileRecording()
    {
        RequireDevice();
        var x = Ones(2).WithRequiresGrad();
        var e = Assert.Throws<InvalidOperationException>(() => x.MulInPlace(2));
        AssertMentions(e, "MulInPlace", "[2]", "NoGrad");
    }

    [Fact]
    public void Backward_ThrowsWhenRunTwiceWithoutRetainGraph()
    {
        RequireDevice();
        var x = Ones(3).WithRequiresGrad();
        var y = x.Exp().Sum();
        y.Backward();
        var e = Assert.Throws<InvalidOperationException>(() => y.Backward());
        AssertMentions(e, "second time", "retainGraph");
    }

    [Fact]
    public void Grad_ThrowsWhenRunTwiceWithoutRetainGraph()
    {
        RequireDevice();
        var x = Ones(3).WithRequiresGrad();
        var y = (x * x).Sum();
        _ = Autograd.Grad(y, x);
        var e = Assert.Throws<InvalidOperationException>(() => Autograd.Grad(y, x));
        AssertMentions(e, "second time", "retainGraph");
    }

    [Fact]
    public void Backward_ThrowsForNonScalarOutputWithoutGradOutputs()
    {
        RequireDevice();
        var x = Ones(3).WithRequiresGrad();
        var y = x * 2.0;
        var e = Assert.Throws<ArgumentException>(() => y.Backward());
        AssertMentions(e, "[3]", "scalar", "gradOutputs");
        var e2 = Assert.Throws<ArgumentException>(() => Autograd.Grad([y], [x]));
        AssertMentions(e2, "[3]", "scalar");
    }

    [Fact]
    public void Grad_ThrowsForGradOutputOfTheWrongShape()
    {
        RequireDevice();
        var x = Ones(3).WithRequiresGrad();
        var y = x * 2.0;
        var e = Assert.Throws<ArgumentException>(() => Autograd.Grad([y], [x], [Ones(4)]));
        AssertMentions(e, "[4]", "[3]");
    }

    [Fact]
    public void Grad_ThrowsForUnusedInputUnlessAllowed()
    {
        RequireDevice();
        var x = Ones(3).WithRequiresGrad();
        var unused = Ones(2).WithRequiresGrad();
        var y = x.Sum();
        var e = Assert.Throws<InvalidOperationException>(() => Autograd.Grad([y], [x, unused], retainGraph: true));
        AssertMentions(e, "Input 1", "[2]", "allowUnused");
    }

    [Fact]
    public void Reshape_ThrowsForWrongElementCount()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Ones(2, 3).Reshape(4));
        AssertMentions(e, "[2, 3]", "[4]", "6 elements", "4 elements");
    }

    [Fact]
    public void Reshape_ThrowsWhenMinusOneCannotBeInferred()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Ones(2, 3).Reshape(4, -1));
        AssertMentions(e, "[2, 3]", "[4, -1]");
    }

    [Fact]
    public void Cat_ThrowsForMismatchedShapes()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.Cat([Ones(2, 3), Ones(2, 4)], 0));
        AssertMentions(e, "Cat", "[2, 3]", "[2, 4]", "tensor 1");
    }

    [Fact]
    public void Cat_ThrowsForMismatchedRanks()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.Cat([Ones(2, 3), Ones(3)], 0));
        AssertMentions(e, "Cat", "[2, 3]", "[3]");
    }

    [Fact]
    public void Gather_ThrowsForIndexOutOfRange()
    {
        RequireDevice();
        if (!ChecksIndexBoundsOnHost)
        {
            Assert.Skip($"Index bounds are not validated on the host for {Device}.");
        }
        var x = Ones(2, 3);
        var index = I64([0, 5, 1, 2], 2, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => x.Gather(1, index));
        AssertMentions(e, "Gather", "5", "[0, 3)", "[2, 3]");
    }

    [Fact]
    public void IndexSelect_ThrowsForNegativeIndex()
    {
        RequireDevice();
        if (!ChecksIndexBoundsOnHost)
        {
            Assert.Skip($"Index bounds are not validated on the host for {Device}.");
        }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ones(4, 3).IndexSelect(0, I64([1, -1], 2)));
        AssertMentions(e, "IndexSelect", "-1", "[0, 4)", "[4, 3]");
    }

    [Fact]
    public void OneHot_ThrowsForClassOutOfRange()
    {
        RequireDevice();
        if (!ChecksIndexBoundsOnHost)
        {
            Assert.Skip($"Index bounds are not validated on the host for {Device}.");
        }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => I64([0, 5], 2).OneHot(3));
        AssertMentions(e, "OneHot", "5", "[0, 3)", "[2] int64");
    }

    [Fact]
    public void CrossEntropy_ThrowsForTargetOutOfRange()
    {
        RequireDevice();
        if (!ChecksIndexBoundsOnHost)
        {
            Assert.Skip($"Index bounds are not validated on the host for {Device}.");
        }
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => F.CrossEntropy(Ones(2, 3), I64([0, 3], 2)));
        AssertMentions(e, "3", "[0, 3)", "[2, 3]");
    }

    [Fact]
    public void Gather_ThrowsForIndexThatIsNotInt64()
    {
        RequireDevice();
        var x = Ones(2, 3);
        var index = Tensor.Zeros([2, 2], DType.Float32, Device);
        var e = Assert.Throws<ArgumentException>(() => x.Gather(1, index));
        AssertMentions(e, "Gather", "int64", "float32", "[2, 2]");
    }

    [Fact]
    public void Gather_ThrowsForIndexOfTheWrongShape()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Ones(2, 3).Gather(1, I64([0, 1, 2], 3, 1)));
        AssertMentions(e, "Gather", "[3, 1]", "[2, 3]");
    }

    [Fact]
    public void RequiresGrad_ThrowsForIntegerTensor()
    {
        RequireDevice();
        var t = I64([1, 2, 3], 3);
        var e = Assert.Throws<ArgumentException>(() => t.RequiresGrad = true);
        AssertMentions(e, "[3]", "int64", "floating-point");
        Assert.False(t.RequiresGrad);
    }

    [Fact]
    public void RequiresGrad_CannotBeClearedOnANonLeaf()
    {
        RequireDevice();
        var y = Ones(2).WithRequiresGrad().Exp();
        var e = Assert.Throws<InvalidOperationException>(() => y.RequiresGrad = false);
        AssertMentions(e, "[2]", "ExpBackward", "Detach");
    }

    [Fact]
    public void Item_ThrowsForMoreThanOneElement()
    {
        RequireDevice();
        var e = Assert.Throws<InvalidOperationException>(() => Ones(2, 2).Item());
        AssertMentions(e, "[2, 2]", "4 elements");
    }

    [Fact]
    public void Sum_ThrowsForAxisOutOfRange()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ones(2, 3).Sum(2));
        AssertMentions(e, "Axis 2", "[2, 3]");
    }

    [Fact]
    public void Where_ThrowsForConditionThatIsNotBool()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Tensor.Where(Ones(2), Ones(2), Ones(2)));
        AssertMentions(e, "Where", "bool", "[2] float64");
    }

    [Fact]
    public void CrossEntropy_ThrowsForFloatTargets()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => F.CrossEntropy(Ones(2, 3), Ones(2)));
        AssertMentions(e, "CrossEntropy", "int64", "float64");
    }

    [Fact]
    public void MseLoss_ThrowsForMismatchedShapes()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => F.MseLoss(Ones(2, 3), Ones(3, 2)));
        AssertMentions(e, "MseLoss", "[2, 3]", "[3, 2]");
    }

    [Fact]
    public void Expand_ThrowsForNonSingletonMismatch()
    {
        RequireDevice();
        var e = Assert.Throws<ArgumentException>(() => Ones(2, 3).Expand(2, 4));
        AssertMentions(e, "[2, 3]", "[2, 4]");
    }
}

/// <summary>The failure twins on the managed CPU backend.</summary>
public sealed class ErrorTestsOnReference : ErrorTests
{
    protected override Device Device => Device.Cpu;
}
