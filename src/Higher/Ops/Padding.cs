namespace Higher;

/// <summary>How <see cref="Tensor.Pad"/> fills the added elements (torch.nn.functional.pad's modes).</summary>
public enum PadMode
{
    /// <summary>A constant value (negative pads crop).</summary>
    Constant,

    /// <summary>The mirror image without repeating the edge: x[1], x[0] | x[0], x[1], ... (each pad smaller than the axis).</summary>
    Reflect,

    /// <summary>The edge element repeated.</summary>
    Replicate,

    /// <summary>Wrap around: the other end's elements (each pad at most the axis).</summary>
    Circular,
}

public sealed partial class Tensor
{
    /// <summary>
    /// Pads the trailing axes (torch.nn.functional.pad): <paramref name="pads"/> holds (before, after)
    /// pairs starting from the last axis, (left, right, top, bottom, ...). Constant mode writes
    /// <paramref name="value"/> (a <see cref="Cat"/> with constant blocks; a negative pad crops, a
    /// <see cref="Slice"/>); the other modes select input elements along each axis with
    /// <see cref="IndexSelect"/> by a computed index. All differentiable primitives, so
    /// derivatives of every order exist (the gradient of a reflected or replicated element is summed).
    /// </summary>
    /// <param name="pads">(before, after) per axis, last axis first; an even count, at most twice the rank.</param>
    /// <param name="mode">How the added elements are filled.</param>
    /// <param name="value">The constant of <see cref="PadMode.Constant"/>.</param>
    public Tensor Pad(IReadOnlyList<int> pads, PadMode mode = PadMode.Constant, double value = 0)
    {
        ArgumentNullException.ThrowIfNull(pads);
        if (pads.Count % 2 != 0 || pads.Count / 2 > Rank)
        {
            throw new ArgumentException($"Pad: pads [{string.Join(", ", pads)}] must hold (before, after) pairs for at most {Rank} axes of {Describe()} (x).", nameof(pads));
        }
        if (mode != PadMode.Constant)
        {
            RequireFloat("Pad");
        }
        var y = this;
        for (int pair = 0; pair < pads.Count / 2; pair++)
        {
            int axis = Rank - 1 - pair;
            int before = pads[2 * pair], after = pads[(2 * pair) + 1];
            int n = Shape.Dims[axis];
            if (mode == PadMode.Constant)
            {
                if (n + before + after < 0 || (before < 0 && -before > n) || (after < 0 && -after > n))
                {
                    throw new ArgumentException($"Pad: pads ({before}, {after}) crop more than the {n} elements of axis {axis} of {Describe()} (x).", nameof(pads));
                }
                y = PadConstant(y, axis, before, after, value);
                continue;
            }
            if (before < 0 || after < 0)
            {
                throw new ArgumentException($"Pad: {mode} pads must be non-negative; got ({before}, {after}) for axis {axis} of {Describe()} (x).", nameof(pads));
            }
            if (n == 0
                || (mode == PadMode.Reflect && (before >= n || after >= n))
                || (mode == PadMode.Circular && (before > n || after > n)))
            {
                string limit = mode == PadMode.Reflect ? "smaller than" : mode == PadMode.Circular ? "at most" : "used on a non-empty axis, not";
                throw new ArgumentException($"Pad: {mode} pads ({before}, {after}) must be {limit} the size {n} of axis {axis} of {Describe()} (x).", nameof(pads));
            }
            if (before == 0 && after == 0)
            {
                continue;
            }
            var index = new long[n + before + after];
            for (int i = 0; i < index.Length; i++)
            {
                int src = i - before;
                index[i] = mode switch
                {
                    PadMode.Reflect => src < 0 ? -src : src >= n ? (2 * (n - 1)) - src : src,
                    PadMode.Replicate => Math.Clamp(src, 0, n - 1),
                    _ => ((src % n) + n) % n,
                };
            }
            y = y.IndexSelect(axis, FromArray(index, new Shape(index.Length), Device));
        }
        return y;
    }

    private static Tensor PadConstant(Tensor x, int axis, int before, int after, double value)
    {
        if (before < 0 || after < 0)
        {
            int n = x.Shape.Dims[axis];
            x = x.Slice(axis, Math.Max(-before, 0), n - Math.Max(-after, 0));
        }
        if (before <= 0 && after <= 0)
        {
            return x;
        }
        var parts = new List<Tensor>(3);
        var dims = x.Shape.ToArray();
        if (before > 0)
        {
            dims[axis] = before;
            parts.Add(FullOn(x.Backend, x.DType, new Shape(dims), value));
        }
        parts.Add(x);
        if (after > 0)
        {
            dims[axis] = after;
            parts.Add(FullOn(x.Backend, x.DType, new Shape(dims), value));
        }
        return Cat(parts, axis);
    }
}
