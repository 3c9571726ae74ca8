// The convolution, pooling, padding and batch-norm cases of the gradchecks (ConvGradCheckTests) and of the
// cross-backend agreement (OpCatalog.All lists them): geometries drawn from a case seed.

namespace Higher.GradCheck;

/// <summary>Convolution, pooling, padding and batch-norm cases, each drawn from a <see cref="CaseGen"/>.</summary>
public static class ConvCatalog
{
    /// <summary>A spatial size for which the (dilated) window fits the padded input, with 0 to 2 positions to spare.</summary>
    private static int FittingSize(CaseGen g, int kernel, int dilation, int padding) =>
        Math.Max(1, (dilation * (kernel - 1)) + 1 - (2 * padding) + g.Int(0, 2));

    /// <summary>Conv2d: groups, stride, padding, dilation, non-square kernels, batch 1 or 2, bias or not.</summary>
    public static OpCase Conv2d(CaseGen g)
    {
        int groups = g.Pick(1, 1, 2);
        int cg = g.Int(1, 2), og = g.Int(1, 2);
        int kh = g.Int(1, 3), kw = g.Int(1, 3);
        Size2d stride = (g.Int(1, 2), g.Int(1, 2)), padding = (g.Int(0, 1), g.Int(0, 1)), dilation = (g.Int(1, 2), g.Int(1, 2));
        int h = FittingSize(g, kh, dilation.Height, padding.Height), w = FittingSize(g, kw, dilation.Width, padding.Width);
        int n = g.Int(1, 2);
        bool bias = g.Chance(0.6);
        var x = g.Normal(new Shape(n, cg * groups, h, w));
        var weight = g.Normal(new Shape(og * groups, cg, kh, kw), 0.5);
        var name = $"Conv2d(kernel {kh}×{kw}, stride {stride}, padding {padding}, dilation {dilation}, groups {groups}, bias {bias})";
        return bias
            ? new OpCase(name, t => Tensor.Conv2d(t[0], t[1], t[2], stride, padding, dilation, groups), [x, weight, g.Normal(new Shape(og * groups))])
            : new OpCase(name, t => Tensor.Conv2d(t[0], t[1], null, stride, padding, dilation, groups), [x, weight]);
    }

    /// <summary>MaxPool2d on distinct values: kernel, stride, padding, dilation, ceil mode.</summary>
    public static OpCase MaxPool2d(CaseGen g)
    {
        Size2d kernel = (g.Int(1, 3), g.Int(1, 3));
        Size2d stride = (g.Int(1, 2), g.Int(1, 2));
        Size2d padding = (g.Int(0, kernel.Height / 2), g.Int(0, kernel.Width / 2));
        Size2d dilation = (g.Int(1, 2), g.Int(1, 2));
        bool ceil = g.Chance(0.3);
        int h = FittingSize(g, kernel.Height, dilation.Height, padding.Height) + 1, w = FittingSize(g, kernel.Width, dilation.Width, padding.Width) + 1;
        // Distinct values: no ties, so the maximum is differentiable at the point.
        var x = g.Distinct(new Shape(g.Int(1, 2), g.Int(1, 2), h, w));
        return new OpCase($"MaxPool2d(kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation}, ceil {ceil})",
            t => Tensor.MaxPool2d(t[0], kernel, stride, padding, dilation, ceil), [x]);
    }

    /// <summary>AvgPool2d: kernel, stride, padding, ceil mode, count_include_pad.</summary>
    public static OpCase AvgPool2d(CaseGen g)
    {
        Size2d kernel = (g.Int(1, 3), g.Int(1, 3));
        Size2d stride = (g.Int(1, 2), g.Int(1, 2));
        Size2d padding = (g.Int(0, kernel.Height / 2), g.Int(0, kernel.Width / 2));
        bool ceil = g.Chance(0.3), includePad = g.Chance(0.5);
        int h = FittingSize(g, kernel.Height, 1, padding.Height) + 1, w = FittingSize(g, kernel.Width, 1, padding.Width) + 1;
        var x = g.Normal(new Shape(g.Int(1, 2), g.Int(1, 2), h, w));
        return new OpCase($"AvgPool2d(kernel {kernel}, stride {stride}, padding {padding}, ceil {ceil}, countIncludePad {includePad})",
            t => Tensor.AvgPool2d(t[0], kernel, stride, padding, ceil, includePad), [x]);
    }

    /// <summary>BatchNorm with batch statistics: [N, C], [N, C, L] or [N, C, H, W] (N = 1 with more than one value per channel), affine or not.</summary>
    public static OpCase BatchNormTraining(CaseGen g)
    {
        int c = g.Int(1, 3), rank = g.Int(2, 4);
        int[] dims = rank switch
        {
            2 => [g.Int(2, 4), c],
            3 => [g.Int(1, 3), c, g.Int(2, 4)],
            _ => [g.Int(1, 3), c, g.Int(1, 3), g.Int(2, 3)],
        };
        var x = g.Normal(new Shape(dims));
        if (g.Chance(0.25))
        {
            return new OpCase($"BatchNorm(training, no weight or bias) of {x.Shape}", t => Tensor.BatchNorm(t[0], null, null, null, null, training: true), [x]);
        }
        var weight = g.AwayFromZero(new Shape(c), 0.5, 1.5);
        var bias = g.Normal(new Shape(c));
        return new OpCase($"BatchNorm(training) of {x.Shape}", t => Tensor.BatchNorm(t[0], null, null, t[1], t[2], training: true), [x, weight, bias]);
    }

    /// <summary>BatchNorm with running statistics, which are differentiated too.</summary>
    public static OpCase BatchNormEvaluation(CaseGen g)
    {
        int c = g.Int(1, 3);
        var x = g.Normal(new Shape(g.Int(1, 3), c, g.Int(1, 3), g.Int(1, 3)));
        var mean = g.Normal(new Shape(c));
        var variance = g.Uniform(new Shape(c), 0.5, 2);
        return new OpCase("BatchNorm(evaluation, running statistics differentiated too)",
            t => Tensor.BatchNorm(t[0], t[1], t[2], t[3], t[4], training: false), [x, mean, variance, g.Normal(new Shape(c)), g.Normal(new Shape(c))]);
    }

    /// <summary>Conv2d with padding "same" (stride 1): odd and even kernels, the even ones padded asymmetrically as torch does.</summary>
    public static OpCase Conv2dSame(CaseGen g)
    {
        int groups = g.Pick(1, 2);
        int cg = g.Int(1, 2), og = g.Int(1, 2);
        int kh = g.Int(1, 4), kw = g.Int(1, 4);
        Size2d dilation = (g.Int(1, 2), g.Int(1, 2));
        int h = g.Int(1, 5), w = g.Int(1, 5);
        var x = g.Normal(new Shape(g.Int(1, 2), cg * groups, h, w));
        var weight = g.Normal(new Shape(og * groups, cg, kh, kw), 0.5);
        return new OpCase($"Conv2d(kernel {kh}×{kw}, padding same, dilation {dilation}, groups {groups})",
            t => Tensor.Conv2d(t[0], t[1], t[2], padding: "same", dilation: dilation, groups: groups), [x, weight, g.Normal(new Shape(og * groups))]);
    }

    /// <summary>ConvTranspose2d: weight [C_in, C_out/groups, kh, kw], stride, padding, output padding, dilation, groups, bias or not.</summary>
    public static OpCase ConvTranspose2d(CaseGen g)
    {
        int groups = g.Pick(1, 1, 2);
        int cg = g.Int(1, 2), og = g.Int(1, 2);
        int kh = g.Int(1, 3), kw = g.Int(1, 3);
        Size2d stride = (g.Int(1, 2), g.Int(1, 2)), dilation = (g.Int(1, 2), g.Int(1, 2));
        int h = g.Int(1, 3), w = g.Int(1, 3);
        // Output padding below max(stride, dilation); padding only where the output stays non-empty.
        Size2d outputPadding = (g.Int(0, Math.Max(stride.Height, dilation.Height) - 1), g.Int(0, Math.Max(stride.Width, dilation.Width) - 1));
        static int Out(int n, int s, int p, int d, int k, int op) => ((n - 1) * s) - (2 * p) + (d * (k - 1)) + op + 1;
        int ph = g.Int(0, 1), pw = g.Int(0, 1);
        ph = Out(h, stride.Height, ph, dilation.Height, kh, outputPadding.Height) > 0 ? ph : 0;
        pw = Out(w, stride.Width, pw, dilation.Width, kw, outputPadding.Width) > 0 ? pw : 0;
        Size2d padding = (ph, pw);
        bool bias = g.Chance(0.6);
        var x = g.Normal(new Shape(g.Int(1, 2), cg * groups, h, w));
        var weight = g.Normal(new Shape(cg * groups, og, kh, kw), 0.5);
        var name = $"ConvTranspose2d(kernel {kh}×{kw}, stride {stride}, padding {padding}, output padding {outputPadding}, dilation {dilation}, groups {groups}, bias {bias})";
        return bias
            ? new OpCase(name, t => Tensor.ConvTranspose2d(t[0], t[1], t[2], stride, padding, outputPadding, groups, dilation), [x, weight, g.Normal(new Shape(og * groups))])
            : new OpCase(name, t => Tensor.ConvTranspose2d(t[0], t[1], null, stride, padding, outputPadding, groups, dilation), [x, weight]);
    }

    /// <summary>Conv1d and ConvTranspose1d (through height 1), unbatched or batched.</summary>
    public static OpCase Conv1dAndTranspose(CaseGen g)
    {
        int c = g.Int(1, 3), o = g.Int(1, 3), k = g.Int(1, 3);
        int stride = g.Int(1, 2), padding = g.Int(0, 1), dilation = g.Int(1, 2);
        int length = Math.Max(1, (dilation * (k - 1)) + 1 - (2 * padding) + g.Int(0, 3));
        bool unbatched = g.Chance(0.3);
        var x = g.Normal(unbatched ? new Shape(c, length) : new Shape(g.Int(1, 2), c, length));
        var weight = g.Normal(new Shape(o, c, k), 0.5);
        var transposedWeight = g.Normal(new Shape(o, c, k), 0.5);
        return new OpCase($"ConvTranspose1d(Conv1d(x, kernel {k}, stride {stride}, padding {padding}, dilation {dilation}){(unbatched ? ", unbatched" : "")})",
            t => Tensor.ConvTranspose1d(Tensor.Conv1d(t[0], t[1], t[2], stride, padding, dilation).Tanh(), t[3], null, stride, padding, 0, 1, dilation),
            [x, weight, g.Normal(new Shape(o)), transposedWeight]);
    }

    /// <summary>AvgPool2d with a divisor override.</summary>
    public static OpCase AvgPool2dDivisorOverride(CaseGen g)
    {
        Size2d kernel = (g.Int(1, 3), g.Int(1, 3));
        Size2d stride = (g.Int(1, 2), g.Int(1, 2));
        Size2d padding = (g.Int(0, kernel.Height / 2), g.Int(0, kernel.Width / 2));
        bool ceil = g.Chance(0.5);
        int divisor = g.Int(1, 5);
        int h = FittingSize(g, kernel.Height, 1, padding.Height) + 1, w = FittingSize(g, kernel.Width, 1, padding.Width) + 1;
        var x = g.Normal(new Shape(g.Int(1, 2), g.Int(1, 2), h, w));
        return new OpCase($"AvgPool2d(kernel {kernel}, stride {stride}, padding {padding}, ceil {ceil}, divisorOverride {divisor})",
            t => Tensor.AvgPool2d(t[0], kernel, stride, padding, ceil, divisorOverride: divisor), [x]);
    }

    /// <summary>AdaptiveAvgPool2d to sizes below, equal to and above the input's (overlapping windows).</summary>
    public static OpCase AdaptiveAvgPool2d(CaseGen g)
    {
        int h = g.Int(1, 6), w = g.Int(1, 6);
        Size2d output = (g.Int(1, 4), g.Int(1, 4));
        bool unbatched = g.Chance(0.3);
        var x = g.Normal(unbatched ? new Shape(g.Int(1, 2), h, w) : new Shape(g.Int(1, 2), g.Int(1, 2), h, w));
        return new OpCase($"AdaptiveAvgPool2d({output}) of {x.Shape}", t => Tensor.AdaptiveAvgPool2d(t[0], output), [x]);
    }

    /// <summary>F.Pad in every mode over the last one or two axes (constant with negative pads: cropping).</summary>
    public static OpCase Pad(CaseGen g)
    {
        var mode = g.Pick(PadMode.Constant, PadMode.Reflect, PadMode.Replicate, PadMode.Circular);
        int h = g.Int(1, 4), w = g.Int(2, 4);
        var x = g.Normal(new Shape(g.Int(1, 2), 2, h, w));
        int Draw(int size) => mode switch
        {
            PadMode.Constant => g.Int(-1, 2),
            PadMode.Reflect => g.Int(0, size - 1),
            _ => g.Int(0, size),
        };
        int[] pads = g.Chance(0.5) ? [Draw(w), Draw(w)] : [Draw(w), Draw(w), Draw(h), Draw(h)];
        double value = g.Real(-1, 1);
        return new OpCase($"Pad([{string.Join(", ", pads)}], {mode}) of {x.Shape}", t => F.Pad(t[0], pads, mode, value).Square(), [x]);
    }
}
