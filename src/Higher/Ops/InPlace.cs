namespace Higher;

public sealed partial class Tensor
{
    /// <summary>
    /// Guards an in-place change: not on tensors the tape is tracking while recording (a leaf that
    /// requires grad may change under <see cref="Autograd.NoGrad"/>, as an optimizer step does).
    /// Bumps the version so any backward that saved this tensor fails instead of using new values.
    /// </summary>
    private void BeginInPlace(string op)
    {
        if (Autograd.IsGradEnabled && RequiresGrad)
        {
            throw new InvalidOperationException(
                $"{op}: in-place change of {Describe()}, which requires grad, while gradients are recorded. Use Autograd.NoGrad() or an out-of-place op.");
        }
        Version.Value++;
    }

    /// <summary>this += alpha·other in place (other broadcasts to this shape).</summary>
    public Tensor AddInPlace(Tensor other, double alpha = 1)
    {
        CheckSameDeviceAndDType("AddInPlace", this, other);
        if (!other.Shape.IsBroadcastableTo(Shape))
        {
            throw new ArgumentException($"AddInPlace: {other.Describe()} (other) cannot be broadcast to {Describe()} (this).");
        }
        BeginInPlace("AddInPlace");
        if (alpha == 1)
        {
            Backend.Binary(BinaryOp.Add, Storage, Shape, other.Storage, other.Shape, Storage, Shape);
        }
        else
        {
            using var scaled = new ScratchTensor(other.RawUnary(UnaryOp.Affine, alpha, 0));
            Backend.Binary(BinaryOp.Add, Storage, Shape, scaled.Value.Storage, other.Shape, Storage, Shape);
        }
        return this;
    }

    /// <summary>this ·= other in place (other broadcasts to this shape).</summary>
    public Tensor MulInPlace(Tensor other)
    {
        CheckSameDeviceAndDType("MulInPlace", this, other);
        if (!other.Shape.IsBroadcastableTo(Shape))
        {
            throw new ArgumentException($"MulInPlace: {other.Describe()} (other) cannot be broadcast to {Describe()} (this).");
        }
        BeginInPlace("MulInPlace");
        Backend.Binary(BinaryOp.Mul, Storage, Shape, other.Storage, other.Shape, Storage, Shape);
        return this;
    }

    /// <summary>this = alpha·this + beta in place.</summary>
    public Tensor AffineInPlace(double alpha, double beta = 0) => AffineInPlace("AffineInPlace", alpha, beta);

    /// <summary>this ·= c in place.</summary>
    public Tensor MulInPlace(double c) => AffineInPlace("MulInPlace", c, 0);

    /// <summary>this = alpha·this + beta, with errors naming the method the caller used.</summary>
    private Tensor AffineInPlace(string op, double alpha, double beta)
    {
        RequireFloat(op, allowInt: true);
        BeginInPlace(op);
        Backend.Unary(UnaryOp.Affine, Storage, Storage, alpha, beta);
        return this;
    }

    /// <summary>Sets every element to <paramref name="value"/>.</summary>
    public Tensor FillInPlace(double value)
    {
        BeginInPlace("FillInPlace");
        Backend.Fill(Storage, value);
        return this;
    }

    /// <summary>Sets every element to 0.</summary>
    public Tensor ZeroInPlace() => FillInPlace(0);

    /// <summary>Copies <paramref name="source"/> (broadcast, converted to this dtype, moved to this device) into this tensor.</summary>
    public Tensor CopyFrom(Tensor source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!source.Shape.IsBroadcastableTo(Shape))
        {
            throw new ArgumentException($"CopyFrom: {source.Describe()} (source) cannot be broadcast to {Describe()} (this).");
        }
        Tensor s;
        using (Autograd.NoGrad())
        {
            s = source.To(Device).To(DType);
        }
        BeginInPlace("CopyFrom");
        BroadcastInto(Backend, s.Storage, s.Shape, Storage, Shape);
        return this;
    }

    /// <summary>A new tensor with a copy of this one's elements (same graph position: differentiable).</summary>
    public Tensor Clone() => this * 1.0;

    /// <summary>Disposes a temporary's storage at scope end.</summary>
    private readonly struct ScratchTensor(Tensor value) : IDisposable
    {
        public Tensor Value { get; } = value;

        public void Dispose() => Value.Storage.Dispose();
    }
}
