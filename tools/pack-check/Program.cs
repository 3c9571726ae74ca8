// The package check's console app (tools/pack-check.sh copies it into a fresh `dotnet new console`
// outside the repository, which references Higher from a local folder only): a MAML meta-gradient
// through one differentiable SGD step, against a central finite difference of the same loss
// written out in plain doubles.
using Higher;
using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

double[] xs = [0.5, -1.0, 2.0], ys = [1.2, -1.8, 3.9];
const double Alpha = 0.1;
var model = new Linear(1, 1, generator: new Generator(7));
model.To(DType.Float64);
var x = Tensor.FromArray(xs, [3, 1]);
var y = Tensor.FromArray(ys, [3, 1]);
var inner = new Sgd(model.Parameters(), new SgdOptions { Lr = Alpha });
using var ctx = InnerLoop.Create(model, inner, copyInitialWeights: false);
var (fmodel, diffopt) = ctx;
diffopt.Step(F.MseLoss(fmodel.Forward(x), y));
var metaGrad = Autograd.Grad(F.MseLoss(fmodel.Forward(x), y), model.Parameters());
double w = model.Parameters()[0].Item(), b = model.Parameters()[1].Item();

// L(w, b) = mean((w1 x + b1 - y)^2) with (w1, b1) one gradient step of the same loss from (w, b).
double Loss(double w0, double b0)
{
    double gw = 0, gb = 0;
    for (int i = 0; i < xs.Length; i++)
    {
        double r = (w0 * xs[i]) + b0 - ys[i];
        gw += 2 * r * xs[i] / xs.Length;
        gb += 2 * r / xs.Length;
    }
    double w1 = w0 - (Alpha * gw), b1 = b0 - (Alpha * gb), l = 0;
    for (int i = 0; i < xs.Length; i++)
    {
        double r = (w1 * xs[i]) + b1 - ys[i];
        l += r * r / xs.Length;
    }
    return l;
}

const double H = 1e-6;
double fdW = (Loss(w + H, b) - Loss(w - H, b)) / (2 * H);
double fdB = (Loss(w, b + H) - Loss(w, b - H)) / (2 * H);
double gW = metaGrad[0]!.Item(), gB = metaGrad[1]!.Item();
Console.WriteLine($"meta-gradient from the installed package: dL/dw = {gW:R}, dL/db = {gB:R}");
Console.WriteLine($"central finite difference:                dL/dw = {fdW:R}, dL/db = {fdB:R}");
Console.WriteLine(model);
bool ok = Math.Abs(gW - fdW) < 1e-6 && Math.Abs(gB - fdB) < 1e-6;
Console.WriteLine(ok ? "OK" : "MISMATCH");
return ok ? 0 : 1;
